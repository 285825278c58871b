"""The pool end to end: real broker and worker processes, real sockets, the tiny model."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest
import zmq

from rerankpool import AsyncClient, BadRequest
from rerankpool import protocol as P
from rerankpool.launch import LocalPool

WORDS = "the a berlin city river people million live north bank music station old new year war park".split()


def text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def mixed_docs(n: int, seed: int) -> list[str]:
    """Docs from 1 to ~700 words, so pairs span all buckets and some are truncated at 512 tokens."""
    rng = random.Random(seed)
    return [text(rng, 1, rng.choice([8, 40, 120, 700])) for _ in range(n)]


# Two very different batching set-ups: tiny batches over fine buckets with 2 workers,
# and big batches in one bucket with 1 worker. Scores must not depend on either.
POOLS = {
    "small-batches-2-workers": dict(
        workers=2, broker_args=["--max-batch", "3", "--bucket-edges", "16,24,32,64,128,512"]
    ),
    "big-batches-1-worker": dict(workers=1, broker_args=["--max-batch", "64", "--bucket-edges", "512"]),
    # The packed forward pass (the CUDA default), here on CPU with grouped attention.
    "packed-1-worker": dict(workers=1, broker_args=["--bucket-edges", "512"], worker_args=["--packed"]),
    # The model in a device process (the CUDA default), padded chunks: a batch of mixed
    # lengths goes to it as several chunks at once.
    "device-process-2-workers": dict(workers=2, broker_args=["--max-batch", "16", "--bucket-edges", "512"],
                                     worker_args=["--device-process"]),
}


@pytest.fixture(scope="module", params=list(POOLS))
def pool(request):
    with LocalPool(model="tiny-bert", **POOLS[request.param]) as pool:
        yield pool


def test_scores_equal_the_model_run_directly(pool, tiny_direct):
    rng = random.Random(1)
    queries = [text(rng, 2, 12) for _ in range(3)]
    docs = mixed_docs(40, seed=2)
    pairs = [(queries[i % 3], d) for i, d in enumerate(docs)]
    with pool.client() as client:
        got = client.score(pairs)
    want = [tiny_direct(q, d) for q, d in pairs]
    np.testing.assert_allclose(got, want, atol=2e-6, rtol=0)  # pairs differ by ~1e-5: mixed-up rows show


def test_rerank_sorts_cuts_and_returns_documents(pool, tiny_direct):
    docs = mixed_docs(12, seed=3)
    with pool.client() as client:
        hits = client.rerank("old city by the river", docs, top_k=5, return_documents=True)
        sig = client.rerank("old city by the river", docs, activation="sigmoid")
    want = np.array([tiny_direct("old city by the river", d) for d in docs])
    order = np.argsort(-want, kind="stable")
    assert [h.index for h in hits] == order[:5].tolist()
    assert all(h.document == docs[h.index] for h in hits)
    np.testing.assert_allclose([h.score for h in hits], want[order[:5]], atol=1e-4)
    np.testing.assert_allclose(sorted(h.score for h in sig), sorted(1 / (1 + np.exp(-want))), atol=1e-5)


def test_many_requests_in_flight_on_one_async_client(pool, tiny_direct):
    requests = [(f"query {i} " + text(random.Random(i), 1, 5), mixed_docs(random.Random(i).randint(1, 9), i))
                for i in range(60)]

    async def run():
        async with AsyncClient(pool.frontend, timeout=60) as client:
            return await asyncio.gather(*(client.score([(q, d) for d in docs]) for q, docs in requests))

    results = asyncio.run(run())
    assert len(results) == len(requests)
    for (query, docs), scores in zip(requests, results):
        np.testing.assert_allclose(scores, [tiny_direct(query, d) for d in docs], atol=1e-4)


def raw_call(endpoint: str, frames: list[bytes]) -> dict:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send_multipart(frames)
        assert sock.poll(10_000), "the broker did not answer"
        return P.unpack(sock.recv_multipart())
    finally:
        sock.close()


BAD_MESSAGES = {
    "malformed msgpack": ([P.TAG, b"\xc1\xc1"], P.ErrorCode.BAD_REQUEST),
    "wrong version": ([b"RP00", P.pack({"op": "ping", "id": 1})[1]], P.ErrorCode.UNSUPPORTED_VERSION),
    "unknown op": (P.pack({"op": "embed", "id": 1}), P.ErrorCode.UNKNOWN_OP),
    "wrong type": (P.pack({"op": "rerank", "id": 1, "query": 5, "docs": ["a"]}), P.ErrorCode.BAD_REQUEST),
    "non-string doc": (P.pack({"op": "rerank", "id": 1, "query": "q", "docs": ["a", None]}), P.ErrorCode.BAD_REQUEST),
    "empty docs": (P.pack({"op": "rerank", "id": 1, "query": "q", "docs": []}), P.ErrorCode.BAD_REQUEST),
    "too many docs": (P.pack({"op": "rerank", "id": 1, "query": "q", "docs": ["a"] * 1001}), P.ErrorCode.TOO_LARGE),
    "huge doc": (P.pack({"op": "rerank", "id": 1, "query": "q", "docs": ["a" * 30_000]}), P.ErrorCode.TOO_LARGE),
    "one frame": ([P.TAG], P.ErrorCode.BAD_REQUEST),
}


def test_bad_input_gets_clear_errors_and_the_broker_keeps_serving(pool, tiny_direct):
    for name, (frames, code) in BAD_MESSAGES.items():
        reply = raw_call(pool.frontend, frames)
        assert reply["ok"] is False, name
        assert reply["error"]["code"] == code, name
        assert reply["error"]["message"], name
    with pool.client() as client:
        with pytest.raises(BadRequest, match="docs is empty"):
            client.rerank("q", [])
        assert client.score([("a query", "a doc")]) == pytest.approx([tiny_direct("a query", "a doc")], abs=1e-4)
        stats = client.stats()
    assert stats["replies_error"].get(P.ErrorCode.BAD_REQUEST, 0) >= 5
    assert stats["queue_pairs"] == 0 and stats["requests_in_flight"] == 0


def test_stats_report_batches_and_workers(pool):
    with pool.client() as client:
        client.score([("q", d) for d in mixed_docs(20, seed=9)])
        stats = client.stats(events_since=0)
    assert len(stats["workers"]) == pool.workers
    assert stats["pairs_scored"] >= 20
    event = stats["events"][-1]
    assert event["padded_tokens"] >= event["real_tokens"] > 0
    assert event["size"] >= 1 and event["inference_ms"] > 0
    # The hops nest: the broker's round trip holds the worker's time, which holds its two stages,
    # and the inference holds the device process's time where there is one.
    assert event["round_trip_ms"] >= event["worker_ms"] >= event["tokenize_ms"] + event["inference_ms"]
    if "--device-process" in pool.worker_args:
        assert event["inference_ms"] >= event["device_ms"] > 0
        assert max(e["chunks"] for e in stats["events"]) > 1  # mixed lengths: chunks in flight together
    else:
        assert event["device_ms"] == 0.0


def test_bench_load_from_several_processes_gets_every_reply(pool):
    from rerankpool.bench.load import BenchRequest, run_load

    rng = random.Random(7)
    requests = [
        BenchRequest(tuple((f"query {i}", d) for d in mixed_docs(rng.randint(1, 6), i)), rerank=bool(i % 2))
        for i in range(24)
    ]
    done: list[int] = []
    wall_s, samples = run_load(pool.frontend, requests, concurrency=4, on_done=done.append, processes=2)
    assert len(samples) == len(requests) and all(s.ok for s in samples)
    assert sum(s.pairs for s in samples) == sum(done) == sum(r.size for r in requests)
    assert 0 < wall_s >= max(s.end_s for s in samples) - min(s.start_s for s in samples)
