"""The gateway's pure parts: error mapping and messages, v1 documents, /info, the metrics rendering."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rerankpool.broker.metrics import PoolMetrics
from rerankpool.errors import NoReply, Overloaded
from rerankpool.http.app import info_body, v1_text
from rerankpool.http.config import GatewayConfig
from rerankpool.http.errors import ApiError, Shape, error_body, validation_message
from rerankpool.http.metrics import _PoolCollector
from rerankpool.protocol import ErrorCode


@pytest.mark.parametrize("code,status", [(ErrorCode.BAD_REQUEST, 422), (ErrorCode.TOO_LARGE, 413),
                                         (ErrorCode.OVERLOADED, 429), (ErrorCode.NO_WORKERS, 503),
                                         (ErrorCode.SHUTTING_DOWN, 503), (ErrorCode.TIMEOUT, 504),
                                         ("unauthorized", 401), ("something new", 500)])
def test_each_pool_code_has_its_status(code, status):
    assert ApiError(code, "m").status == status


def test_client_errors_become_api_errors():
    assert ApiError.from_pool(Overloaded(ErrorCode.OVERLOADED, "full")).status == 429
    unreachable = ApiError.from_pool(NoReply("no reply from tcp://x"))
    assert unreachable.status == 503 and "did not answer" in unreachable.message


def test_each_shape_has_its_error_body():
    error = ApiError(ErrorCode.OVERLOADED, "back off")
    assert error_body(Shape.TEI, error) == {"error": "back off", "error_type": "Overloaded"}
    assert error_body(Shape.COHERE, error) == {"message": "back off"}
    assert error_body(Shape.V1, error) == {"message": "back off", "detail": "back off"}
    assert error_body(Shape.POOL, error) == {"error": {"code": "overloaded", "message": "back off"}}


def test_a_body_of_two_possible_shapes_is_judged_by_the_one_it_meant():
    errors = [{"loc": ("body", "TEIRerankRequest", "texts"), "msg": "Field required", "type": "missing"},
              {"loc": ("body", "InfinityRerankRequest", "documents", 0), "msg": "Input should be a valid string",
               "type": "string_type"}]
    assert validation_message(errors) == "invalid request body: documents.0: Input should be a valid string"
    bad_json = [{"loc": ("body", 7), "msg": "JSON decode error", "type": "json_invalid",
                 "ctx": {"error": "Expecting value"}}]
    assert validation_message(bad_json) == "the body is not valid JSON (near character 7): Expecting value"


def test_v1_documents_are_read_as_cohere_reads_them():
    assert v1_text("plain", None) == "plain"
    assert v1_text({"text": "t", "title": "x"}, None) == "t"
    fielded = {"title": "Berlin", "body": "a city", "text": "t"}
    assert v1_text(fielded, ["body", "title"]) == "body: a city\ntitle: Berlin"
    assert v1_text({"title": "Rome", "year": 753}, None) == "title: Rome\nyear: 753"


STATS = {
    "workers": [{"model": "m", "label": "m (test)", "engine": "torch", "device": "cpu", "dtype": "float32",
                 "max_length": 512},
                {"model": "m", "label": "m (test)", "engine": "onnx", "device": "cpu", "dtype": "int8",
                 "max_length": 512}],
    "limits": {"max_docs": 10, "max_doc_chars": 100, "max_query_chars": 50, "max_message_bytes": 1000},
    "version": "9.9", "host": "h", "uptime_s": 1.0,
    "models": [{"name": "m", "default": True, "workers": 2, "queued_pairs": 3, "label": "m (test)", "engines": [],
                "pairs_scored": 40, "queue_buckets": {"32": 3, "512": 0}},
               {"name": "gone", "default": False, "workers": 0, "queued_pairs": 0, "label": "gone (test)",
                "engines": [], "pairs_scored": 7, "queue_buckets": {"512": 0}}],
    "requests_in_flight": 1, "batches_in_flight": 2, "pairs_scored": 40, "batches_requeued": 1, "workers_lost": 0,
}


def test_info_lists_models_with_their_workers_and_tei_fields():
    """TEI's fields describe the default model; a model whose workers are all gone is still listed, with 0."""
    info = info_body(STATS, GatewayConfig())
    assert info["model_id"] == "m" and info["max_client_batch_size"] == 10 and info["version"] == "9.9"
    model, gone = info["models"]
    assert model["workers"] == 2 and model["engines"] == ["onnx", "torch"] and model["dtypes"] == ["float32", "int8"]
    assert model["default"] and (gone["name"], gone["workers"], gone["default"]) == ("gone", 0, False)
    families = {f["family"]: f["engines"] for f in info["families"]}
    assert families["xlm-roberta"] == ("torch", "onnx", "mlx") and families["llm"] == ("torch",)


def test_pool_metrics_render_as_prometheus_families():
    m = PoolMetrics()
    m.outcome("rerank", "ok", "m")
    m.outcome("score", "overloaded")
    m.batch_done(4, real_tokens=90, padded_tokens=120, queue_s=0.001, tokenize_s=0.002, inference_s=0.004)
    m.request_done(0.02)
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(_PoolCollector({**STATS, "metrics": m.as_dict()}))
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert {s.labels["model"]: s.value for s in families["rerankpool_workers_live"].samples} == {"m": 2, "gone": 0}
    assert {s.labels["model"]: s.value for s in families["rerankpool_pairs_scored"].samples} == {"m": 40, "gone": 7}
    assert {(s.labels["op"], s.labels["model"]) for s in families["rerankpool_requests"].samples} == \
        {("rerank", "m"), ("score", "")}
    assert families["rerankpool_overload_refusals"].samples[0].value == 1
    assert families["rerankpool_padding_ratio"].samples[0].value == pytest.approx(0.25)
    buckets = {s.labels["le"]: s.value for s in families["rerankpool_batch_size_pairs"].samples
               if s.name.endswith("_bucket")}
    assert buckets["2.0"] == 0 and buckets["4.0"] == 1 and buckets["+Inf"] == 1  # cumulative, as Prometheus wants
    queued = {(s.labels["model"], s.labels["bucket"]): s.value for s in families["rerankpool_queued_pairs"].samples}
    assert queued == {("m", "32"): 3, ("m", "512"): 0, ("gone", "512"): 0}
    registry = CollectorRegistry()
    registry.register(_PoolCollector(None))
    assert "rerankpool_broker_up 0.0" in generate_latest(registry).decode()
