"""The sweep's raw-data dataclasses: derived properties and the JSON round trip."""

from __future__ import annotations

import gzip
import json
import shutil

import pytest

from rerankpool.bench.results import (
    BaselineResult,
    BatchEvent,
    ConfigResult,
    RequestSample,
    SweepResult,
)


def _sweep() -> SweepResult:
    config = ConfigResult(
        batch=32, concurrency=4, engine="onnx", workers=2, pairs=64, wall_s=0.5,
        requests=[RequestSample(1.0, 1.25, 32, True), RequestSample(1.0, 1.5, 32, False, "timeout")],
        batch_events=[BatchEvent(t=1.1, worker="worker-0", size=32, tokenize_ms=2.0, inference_ms=10.0,
                                 queue_wait_ms=0.5, real_tokens=750, padded_tokens=1000)],
        samples=[{"t": 1.0, "elapsed_s": 0.0, "system.cpu_pct": 12.5, "gpu.0.util_pct": 80.0}],
    )
    return SweepResult(
        name="01_test", title="T", description="D", timestamp="2025-01-01 00:00:00",
        model="m", model_label="stand-in for x", real_scores=False, engine="onnx", device="cpu",
        dtype="int8", batching={"max_batch": 256, "timeout_ms": 5.0, "bucket_edges": [64, 128]},
        hardware={"cpu": "2 cores"}, software={"python": "3.11"}, data="synthetic",
        configs=[config], baselines=[BaselineResult("st", 100, 2.0, 32, "in-process")],
    )


def test_request_sample_latency_and_per_request_throughput() -> None:
    r = RequestSample(start_s=10.0, end_s=10.25, pairs=50, ok=True)
    assert r.latency_ms == pytest.approx(250.0)
    assert r.throughput_pairs_per_s == pytest.approx(200.0)
    assert RequestSample(1.0, 1.0, 5, True).throughput_pairs_per_s == 0.0


def test_padding_waste_is_share_of_padded_tokens() -> None:
    e = BatchEvent(t=0.0, worker="w", size=8, tokenize_ms=1.0, inference_ms=2.0, queue_wait_ms=0.1, real_tokens=600,
                   padded_tokens=1000)
    assert e.padding_waste_pct == pytest.approx(40.0)
    assert BatchEvent(t=0.0, worker="w", size=0, tokenize_ms=0, inference_ms=0, queue_wait_ms=0, real_tokens=0,
                      padded_tokens=0).padding_waste_pct is None


def test_batch_events_of_older_results_still_load() -> None:
    """Results recorded before chunks and seq existed name only the fields they had."""
    old = {"t": 1234.5, "worker": "worker-1", "size": 16, "tokenize_ms": 1.5, "inference_ms": 7.0,
           "queue_wait_ms": 0.25, "real_tokens": 900, "padded_tokens": 1200, "gone_field": 1}
    assert BatchEvent.from_dict(old) == BatchEvent(t=1234.5, worker="worker-1", size=16, tokenize_ms=1.5,
                                                   inference_ms=7.0, queue_wait_ms=0.25, real_tokens=900,
                                                   padded_tokens=1200)


def test_aggregate_throughput_is_pairs_over_wall_time() -> None:
    c = _sweep().configs[0]
    assert c.aggregate_pairs_per_s == pytest.approx(128.0)
    assert [r.ok for r in c.ok_requests] == [True]
    assert c.failed_requests == 1
    assert _sweep().baselines[0].pairs_per_s == pytest.approx(50.0)


def test_json_round_trip(tmp_path) -> None:
    sweep = _sweep()
    path = sweep.to_json(tmp_path / "sub" / "01_test.json")
    assert json.loads(path.read_text())["format"] == "rerankpool-sweep/1"
    assert SweepResult.from_json(path) == sweep


def test_gzipped_json_round_trip(tmp_path) -> None:
    """The committed results keep NAME.json.gz: from_json reads it as is, and to_json writes it."""
    sweep = _sweep()
    plain = sweep.to_json(tmp_path / "01_test.json")
    packed = tmp_path / "01_test.json.gz"
    with plain.open("rb") as src, gzip.open(packed, "wb") as dst:  # as `gzip -9` leaves it
        shutil.copyfileobj(src, dst)
    assert SweepResult.from_json(packed) == sweep
    written = sweep.to_json(tmp_path / "out" / "01_test.json.gz")
    assert json.loads(gzip.decompress(written.read_bytes()))["format"] == "rerankpool-sweep/1"
    assert SweepResult.from_json(written) == sweep


def test_json_ignores_unknown_keys_and_refuses_other_formats(tmp_path) -> None:
    raw = _sweep().to_dict()
    raw["future_field"] = 1
    raw["configs"][0]["requests"][0]["retries"] = 2
    assert SweepResult.from_dict(raw) == _sweep()
    raw["format"] = "something-else/9"
    with pytest.raises(ValueError, match="unsupported sweep format"):
        SweepResult.from_dict(raw)


def test_encoder_flops_match_the_models_own_matmuls():
    """The compute ceiling's FLOP count: 2 FLOPs per weight per token, plus attention's two n x n products."""
    torch = pytest.importorskip("torch")
    from transformers import BertConfig, BertForSequenceClassification

    from rerankpool.bench.ceilings import pair_flops

    config = BertConfig(hidden_size=48, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96, num_labels=1)
    model = BertForSequenceClassification(config)
    encoder_weights = sum(
        m.weight.numel() for m in model.bert.encoder.modules() if isinstance(m, torch.nn.Linear)
    )
    n = 37
    attention = config.num_hidden_layers * 4 * n * n * config.hidden_size
    head = 2 * (model.bert.pooler.dense.weight.numel() + model.classifier.weight.numel())  # counted, not derived
    assert pair_flops(config.to_dict(), n) == 2 * n * encoder_weights + attention + head


def test_decoder_flops_match_the_models_own_matmuls():
    """An LLM reranker: every decoder weight twice per token, causal attention's half of the two n x n
    products, and the two output rows the score reads (not the vocabulary)."""
    torch = pytest.importorskip("torch")
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from rerankpool.bench.ceilings import pair_flops

    config = Qwen3Config(hidden_size=48, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                         head_dim=16, intermediate_size=96, vocab_size=100)
    model = Qwen3ForCausalLM(config)
    decoder_weights = sum(m.weight.numel() for m in model.model.layers.modules() if isinstance(m, torch.nn.Linear))
    n = 37
    attention = config.num_hidden_layers * 2 * n * n * config.num_attention_heads * config.head_dim
    assert pair_flops(config.to_dict(), n) == 2 * n * decoder_weights + attention + 2 * 2 * config.hidden_size
