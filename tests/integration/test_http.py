"""The HTTP gateway end to end: a real pool, a real ``rerankpool http`` process, plain httpx.

Every route answers in its own shape with the pool's exact scores; every error status
comes in the route's own error body; the gateway keeps serving and loses nothing.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rerankpool import AsyncClient
from rerankpool.launch import LocalPool
from tests.integration.gateway_process import GatewayProcess

KEY = "test-key-1"
AUTH = {"authorization": f"Bearer {KEY}"}
FAST = ["--heartbeat-interval-s", "0.2", "--liveness", "3"]
WORDS = "the a berlin city river people million live north bank music station old new year war park".split()


def docs(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 60))) for _ in range(n)]


@pytest.fixture(scope="module")
def pool():
    with LocalPool(model="tiny-bert", workers=2, broker_args=["--max-docs", "50", "--max-doc-chars", "5000", *FAST],
                   worker_args=FAST) as pool:
        yield pool


@pytest.fixture(scope="module")
def gateway(pool):
    with GatewayProcess(pool.frontend, "--api-key", KEY, "--api-key", "other-key", "--max-body-bytes", "200000") as gw:
        yield gw


@pytest.fixture
def http(gateway):
    with httpx.Client(base_url=gateway.url, headers=AUTH, timeout=30) as client:
        yield client


# -- every route, every shape ---------------------------------------------------------------


def test_tei_rerank_is_sorted_sigmoid_and_exact(pool, http):
    query, texts = "berlin river", docs(12, seed=1)
    with pool.client() as client:
        want = client.rerank(query, texts, activation="sigmoid")
        raw = client.rerank(query, texts)
    r = http.post("/rerank", json={"query": query, "texts": texts, "return_text": True})
    assert r.status_code == 200, r.text
    got = r.json()
    assert [g["index"] for g in got] == [h.index for h in want]
    np.testing.assert_allclose([g["score"] for g in got], [h.score for h in want], atol=1e-6, rtol=0)
    assert all(g["text"] == texts[g["index"]] for g in got)
    assert int(r.headers["x-compute-tokens"]) > len(texts)
    for header in ("x-total-time", "x-tokenization-time", "x-queue-time", "x-inference-time"):
        assert int(r.headers[header]) >= 0
    r = http.post("/rerank", json={"query": query, "texts": texts, "raw_scores": True})
    assert [g["index"] for g in r.json()] == [h.index for h in raw]
    np.testing.assert_allclose([g["score"] for g in r.json()], [h.score for h in raw], atol=1e-6, rtol=0)
    assert "text" not in r.json()[0]


def test_infinity_body_on_rerank(pool, http):
    query, documents = "music station", docs(8, seed=2)
    with pool.client() as client:
        want = client.rerank(query, documents, top_k=3, activation="sigmoid")
    r = http.post("/rerank", json={"query": query, "documents": documents, "top_n": 3, "return_documents": True,
                                   "model": "tiny-bert"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "rerank" and body["model"] == "tiny-bert" and body["usage"]["total_tokens"] > 0
    assert [x["index"] for x in body["results"]] == [h.index for h in want]
    np.testing.assert_allclose([x["relevance_score"] for x in body["results"]], [h.score for h in want], atol=1e-6)
    assert [x["document"] for x in body["results"]] == [documents[h.index] for h in want]


def test_cohere_v2_cuts_to_top_n_with_scores_in_0_1(pool, http):
    query, documents = "old war park", docs(10, seed=3)
    with pool.client() as client:
        want = client.rerank(query, documents, top_k=4, activation="sigmoid")
    r = http.post("/v2/rerank", json={"model": "tiny-bert", "query": query, "documents": documents, "top_n": 4,
                                      "max_tokens_per_doc": None})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] and body["meta"]["api_version"]["version"] == "2"
    assert [x["index"] for x in body["results"]] == [h.index for h in want]
    np.testing.assert_allclose([x["relevance_score"] for x in body["results"]], [h.score for h in want], atol=1e-6)
    assert all(0 < x["relevance_score"] < 1 and "document" not in x for x in body["results"])


def test_v1_takes_strings_objects_and_rank_fields(pool, http):
    query = "city people"
    documents = ["berlin city", {"text": "people live north", "id": "a7"}, "river bank"]
    r = http.post("/v1/rerank", json={"model": "tiny-bert", "query": query, "documents": documents,
                                      "return_documents": True, "top_n": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    with pool.client() as client:
        want = client.rerank(query, ["berlin city", "people live north", "river bank"], top_k=2,
                             activation="sigmoid")
    assert [x["index"] for x in body["results"]] == [h.index for h in want]
    np.testing.assert_allclose([x["relevance_score"] for x in body["results"]], [h.score for h in want], atol=1e-6)
    by_index = {x["index"]: x["document"] for x in body["results"]}
    if 1 in by_index:
        assert by_index[1] == {"text": "people live north", "id": "a7"}  # an object comes back whole
    assert body["model"] == "tiny-bert" and body["usage"]["total_tokens"] > 0
    assert body["meta"]["billed_units"]["search_units"] == 1
    fielded = [{"title": "Berlin", "body": "a city", "text": "ignored"}, {"title": "Rome", "year": 753}]
    r = http.post("/v1/rerank", json={"query": query, "documents": fielded, "rank_fields": ["title", "body"]})
    scored = {x["index"]: x["relevance_score"] for x in r.json()["results"]}
    r = http.post("/v1/rerank", json={"query": query, "documents": fielded[1:]})  # no text, no rank_fields
    with pool.client() as client:
        want = client.score([(query, "title: Berlin\nbody: a city"), (query, "title: Rome"),
                             (query, "title: Rome\nyear: 753")], activation="sigmoid")
    assert [scored[0], scored[1], r.json()["results"][0]["relevance_score"]] == pytest.approx(want, abs=1e-6)


def test_pool_routes_match_the_python_client(pool, http):
    query, documents = "north bank", docs(6, seed=4)
    with pool.client() as client:
        want = client.rerank(query, documents, top_k=5, return_documents=True)
        pairs = [(f"q{i % 2}", d) for i, d in enumerate(documents)]
        want_scores = client.score(pairs)
    r = http.post("/pool/rerank", json={"query": query, "documents": documents, "top_k": 5,
                                        "return_documents": True})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [(x["index"], x["document"]) for x in results] == [(h.index, h.document) for h in want]
    np.testing.assert_allclose([x["score"] for x in results], [h.score for h in want], atol=1e-6, rtol=0)
    r = http.post("/pool/score", json={"pairs": pairs})
    np.testing.assert_allclose(r.json()["scores"], want_scores, atol=1e-6, rtol=0)
    usage = r.json()["usage"]
    assert usage["tokens"] > len(pairs) and usage["inference_ms"] > 0


@pytest.mark.parametrize("path, body, key", [
    ("/rerank", {"query": "q", "documents": ["d"], "model": "nope"}, "error"),
    ("/v2/rerank", {"model": "nope", "query": "q", "documents": ["d"]}, "message"),
    ("/v1/rerank", {"model": "nope", "query": "q", "documents": ["d"]}, "message"),
    ("/pool/rerank", {"model": "nope", "query": "q", "documents": ["d"]}, "error"),
    ("/pool/score", {"model": "nope", "pairs": [["q", "d"]]}, "error"),
])
def test_a_model_never_served_is_404_naming_the_served_ones(http, path, body, key):
    r = http.post(path, json=body)
    assert r.status_code == 404, r.text
    message = r.json()[key]["message"] if key == "error" and path.startswith("/pool") else r.json()[key]
    assert "'nope' is not served by this pool; served: 'tiny-bert'" in message


def test_health_info_docs_and_openapi(gateway, http):
    r = httpx.get(gateway.url + "/health")  # no key needed: load balancers probe it
    assert r.status_code == 200 and r.json()["workers"] == 2 and r.json()["status"] == "ok"
    assert r.json()["model"] == "tiny-bert" and r.json()["models"] == {"tiny-bert": 2}
    info = http.get("/info").json()
    assert info["model_id"] == "tiny-bert" and info["max_client_batch_size"] == 50
    assert info["models"][0]["workers"] == 2 and info["models"][0]["engines"] == ["torch"]
    assert info["models"][0]["default"] and info["models"][0]["name"] == "tiny-bert"
    assert info["limits"]["max_doc_chars"] == 5000 and info["version"]
    spec = httpx.get(gateway.url + "/openapi.json").json()
    assert {"/rerank", "/v1/rerank", "/v2/rerank", "/pool/rerank", "/pool/score", "/health", "/info"} <= set(
        spec["paths"])
    docs = httpx.get(gateway.url + "/docs")
    assert docs.status_code == 200 and "/docs/static/swagger-ui-bundle.js" in docs.text  # served here: works offline
    assert httpx.get(gateway.url + "/docs/static/swagger-ui-bundle.js").status_code == 200


def test_metrics_count_the_pool_and_the_gateway(gateway, http):
    http.post("/pool/score", json={"pairs": [["q", "d"]]})
    text = httpx.get(gateway.url + "/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["rerankpool_broker_up"].samples[0].value == 1
    assert [(s.labels, s.value) for s in families["rerankpool_workers_live"].samples] == [({"model": "tiny-bert"}, 2)]
    ok_scores = [s.value for s in families["rerankpool_requests"].samples
                 if s.labels == {"op": "score", "outcome": "ok", "model": "tiny-bert"} and s.name.endswith("_total")]
    assert ok_scores and ok_scores[0] >= 1
    for name in ("rerankpool_request_duration_seconds", "rerankpool_inference_duration_seconds",
                 "rerankpool_tokenize_duration_seconds", "rerankpool_queue_duration_seconds",
                 "rerankpool_batch_size_pairs", "rerankpool_batch_tokens"):
        count = [s.value for s in families[name].samples if s.name == name + "_count"]
        assert count and count[0] >= 1, name
    http_requests = [s for s in families["rerankpool_http_requests"].samples
                     if s.labels.get("route") == "/pool/score" and s.labels.get("status") == "200"]
    assert http_requests and http_requests[0].value >= 1
    for name in ("rerankpool_queued_pairs", "rerankpool_padding_ratio", "rerankpool_batches_requeued",
                 "rerankpool_poison_pairs", "rerankpool_overload_refusals", "rerankpool_http_request_duration_seconds"):
        assert name in families, name


# -- errors: each status, in each shape's body -------------------------------------------------


BAD_BODIES = [  # (route, body, status, the error body's key, what the message must say)
    ("/rerank", b"{not json", 422, "error", "not valid JSON"),
    ("/rerank", b'{"query": "q", "texts": []}', 422, "error", "texts: List should have at least 1 item"),
    ("/rerank", b'{"query": "q", "texts": [null]}', 422, "error", "texts.0: Input should be a valid string"),
    ("/rerank", b'{"query": 5, "texts": ["a"]}', 422, "error", "query: Input should be a valid string"),
    ("/rerank", b'{"query": "q", "documents": [7]}', 422, "error", "documents.0: Input should be a valid string"),
    ("/rerank", b'{"query": "q", "texts": ["a"], "truncation_direction": "Up"}', 422, "error",
     "truncation_direction: Input should be 'Right'"),
    ("/v2/rerank", b'{"model": "m", "query": "q", "documents": ["a"], "max_tokens_per_doc": 99999999999999}', 422,
     "message", "max_tokens_per_doc: Input should be less than or equal to 1048576"),
    ("/v2/rerank", b'{"model": "m", "query": "q", "documents": []}', 422, "message", "at least 1 item"),
    ("/v2/rerank", b'{"model": "m", "query": "q", "documents": "abc"}', 422, "message", "documents: Input should"),
    ("/v2/rerank", b'{"model": "m", "query": "q", "documents": ["a"], "top_n": 0}', 422, "message",
     "top_n: Input should be greater than or equal to 1"),
    ("/v1/rerank", b'{"query": "q", "documents": [null]}', 422, "detail", "documents.0"),
    ("/v1/rerank", b'[1, 2]', 422, "detail", "Input should be a valid dictionary"),
    ("/pool/rerank", b'{"query": "q", "documents": ["a"], "surprise": 1}', 422, "error",
     "surprise: Extra inputs are not permitted"),
    ("/pool/score", b'{"pairs": [["q"]]}', 422, "error", "pairs.0"),
    ("/pool/score", b'{"pairs": [["q", "d"]], "activation": "softmax"}', 422, "error", "activation"),
]


@pytest.mark.parametrize("path,body,status,key,says", BAD_BODIES)
def test_bad_bodies_get_their_status_and_shape(http, path, body, status, key, says):
    r = http.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    message = r.json()[key]
    text = message["message"] if isinstance(message, dict) else message
    assert says in text, text


def test_too_many_and_too_long_documents_get_413(http):
    r = http.post("/v2/rerank", json={"model": "m", "query": "q", "documents": ["d"] * 51})
    assert r.status_code == 413 and "51 docs" in r.json()["message"] and "limit is 50" in r.json()["message"]
    r = http.post("/v1/rerank", json={"query": "q", "documents": ["d"] * 51})
    assert r.status_code == 413 and "limit is 50" in r.json()["message"] and r.json()["detail"]
    r = http.post("/rerank", json={"query": "q", "texts": ["word " * 2000]})
    assert r.status_code == 413 and r.json()["error_type"] == "Validation" and "limit is 5000" in r.json()["error"]
    r = http.post("/pool/rerank", json={"query": "q", "documents": ["x" * 1000] * 300})
    assert r.status_code == 413 and "200000 bytes" in r.json()["error"]["message"]


def test_api_keys(gateway):
    body = {"query": "q", "texts": ["a"]}
    r = httpx.post(gateway.url + "/rerank", json=body)
    assert r.status_code == 401 and "API key" in r.json()["error"]
    r = httpx.post(gateway.url + "/v2/rerank", json={"query": "q", "documents": ["a"]},
                   headers={"authorization": "Bearer wrong"})
    assert r.status_code == 401 and "API key" in r.json()["message"]
    other = {"authorization": "Bearer other-key"}
    assert httpx.post(gateway.url + "/rerank", json=body, headers=other).status_code == 200
    assert httpx.post(gateway.url + "/rerank", json=body, headers={"authorization": KEY}).status_code == 200  # bare
    assert httpx.get(gateway.url + "/info").status_code == 401


def test_bad_deadline_header(http):
    r = http.post("/pool/score", json={"pairs": [["q", "d"]]}, headers={"x-request-timeout-ms": "soon"})
    assert r.status_code == 422 and "x-request-timeout-ms" in r.json()["error"]["message"]


def test_deadline_passes_504_and_a_hung_up_caller_is_cancelled(pool, gateway, http):
    """A stopped worker holds the work: the deadline answers 504; a caller that leaves is dropped at once."""
    victim = pool.worker_pids()[0]
    other = pool.worker_pids()[1]
    os.kill(victim, signal.SIGSTOP)
    os.kill(other, signal.SIGSTOP)
    try:
        r = http.post("/v2/rerank", json={"query": "q", "documents": ["a", "b"]},
                      headers={"x-request-timeout-ms": "300"})
        assert r.status_code == 504 and "deadline passed" in r.json()["message"]

        async def leave_early() -> None:
            async with httpx.AsyncClient(base_url=gateway.url, headers=AUTH) as client, \
                    AsyncClient(pool.frontend) as broker:
                task = asyncio.ensure_future(client.post("/pool/score", json={"pairs": [["q", "d"]]}))
                while (await broker.stats())["requests_in_flight"] == 0:
                    pass  # until the request reaches the broker
                task.cancel()  # the caller hangs up
                with pytest.raises(asyncio.CancelledError):
                    await task
                while (await broker.stats())["requests_in_flight"] != 0:
                    pass  # until the gateway's cancel reaches the broker

        asyncio.run(asyncio.wait_for(leave_early(), 20))
    finally:
        os.kill(victim, signal.SIGCONT)
        os.kill(other, signal.SIGCONT)
    pool.wait_for_workers(2, timeout_s=60)


def test_overloaded_429_and_no_workers_503(tmp_path):
    with LocalPool(model="tiny-bert", workers=1, broker_args=["--max-queued-pairs", "3"]) as small:
        with GatewayProcess(small.frontend) as gw:
            r = httpx.post(gw.url + "/v2/rerank", json={"query": "q", "documents": ["a"] * 4})
            assert r.status_code == 429 and r.headers["retry-after"] == "1" and "back off" in r.json()["message"]
            small.worker_proc.terminate()
            small.worker_proc.wait(30)
            with small.client() as client:
                while client.ping()["workers"]:
                    pass  # the worker says goodbye as it stops
            r = httpx.get(gw.url + "/health")
            assert r.status_code == 503 and r.json()["status"] == "unavailable"
            r = httpx.post(gw.url + "/rerank", json={"query": "q", "texts": ["a"]},
                           headers={"x-request-timeout-ms": "200"})
            assert r.status_code == 503 and r.json()["error_type"] == "Unhealthy" and "no worker" in r.json()["error"]
        with small.client() as client:
            stats = client.stats()
    assert stats["replies_error"] == {"overloaded": 1, "no_workers": 1}


def test_broker_unreachable_is_503(tmp_path):
    with GatewayProcess(f"ipc://{tmp_path}/nothing-here") as gw:
        assert httpx.get(gw.url + "/health").status_code == 503
        text = httpx.get(gw.url + "/metrics").text
        assert "rerankpool_broker_up 0.0" in text


def test_the_gateway_keeps_serving_and_loses_nothing(pool, http):
    """After every kind of bad input, concurrent good requests are all answered exactly."""
    with pool.client() as client:
        before = client.stats()

    async def many() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=http.base_url, headers=AUTH, timeout=60) as client:
            return await asyncio.gather(*(client.post("/pool/score", json={"pairs": [[f"q{i}", d] for d in docs(5, i)]})
                                          for i in range(40)))

    responses = asyncio.run(many())
    assert [r.status_code for r in responses] == [200] * 40
    with pool.client() as client:
        for i, r in enumerate(responses):
            np.testing.assert_allclose(r.json()["scores"], client.score([(f"q{i}", d) for d in docs(5, i)]), atol=1e-6)
        after = client.stats()
    assert after["replies_ok"] - before["replies_ok"] == 80


def test_bench_load_over_http_gets_every_reply(gateway):
    from rerankpool.bench.load import BenchRequest, HttpTarget, run_load

    requests = [BenchRequest(tuple((f"q{i}", d) for d in docs(4, i)), rerank=i % 2 == 0) for i in range(30)]
    wall_s, samples = run_load(HttpTarget(gateway.url, api_key=KEY), requests, concurrency=4, processes=2)
    assert len(samples) == 30 and all(s.ok for s in samples) and wall_s > 0
    _, refused = run_load(HttpTarget(gateway.url), requests[:2], concurrency=1)  # no key
    assert [s.error[:8] for s in refused] == ["HTTP 401"] * 2
