"""The broker's cumulative metrics: histogram buckets, per-op outcomes, and what a batch adds."""

from __future__ import annotations

import numpy as np
import pytest

from rerankpool.broker.core import CoreConfig, BrokerCore
from rerankpool.broker.metrics import Histogram, PoolMetrics
from rerankpool.protocol import OP_RERANK, OP_SCORE, BatchTimings, ErrorCode, Request, WorkerInfo


def test_histogram_puts_each_value_in_the_first_bucket_that_holds_it():
    h = Histogram((1.0, 2.0))
    for value in (0.5, 1.0, 1.5, 2.0, 9.0):
        h.observe(value)
    assert h.counts == [2, 2, 1] and h.count == 5 and h.total == pytest.approx(14.0)
    assert h.as_dict() == {"bounds": [1.0, 2.0], "counts": [2, 2, 1], "sum": 14.0}


def test_outcomes_are_counted_by_op_and_model():
    m = PoolMetrics()
    m.outcome("rerank", "ok", "a")
    m.outcome("rerank", "ok", "a")
    m.outcome("rerank", "ok", "b")
    m.outcome("score", "overloaded")
    assert m.as_dict()["requests"] == [{"op": "rerank", "outcome": "ok", "model": "a", "count": 2},
                                       {"op": "rerank", "outcome": "ok", "model": "b", "count": 1},
                                       {"op": "score", "outcome": "overloaded", "model": "", "count": 1}]


def worker_info() -> WorkerInfo:
    return WorkerInfo("m", "m", "torch", "cpu", "float32", 2, 1, "h", 512)


def test_the_core_counts_batches_requests_and_refusals():
    core = BrokerCore(CoreConfig(max_queued_pairs=3))
    core.register(b"w", worker_info(), 0.0)
    assert core.admit((b"c", 1), Request(1, OP_RERANK, ["q"], None, ["a", "b"]), 0.0) is None
    assert core.admit((b"c", 2), Request(2, OP_SCORE, ["q"], None, ["a", "b"]), 0.0)[0] == ErrorCode.OVERLOADED
    [(_, batch)] = core.dispatch(0.0)
    timings = BatchTimings(size=2, tokenize_ms=1.0, inference_ms=3.0, real_tokens=12, padded_tokens=16)
    _, [outcome] = core.on_result(b"w", batch.id, np.zeros(2, np.float32), 0.01, timings, np.array([5, 7]))
    assert outcome.usage["tokens"] == 12 and outcome.usage["inference_ms"] == pytest.approx(3.0)
    m = core.counters.metrics.as_dict()
    assert {(r["op"], r["outcome"]): r["count"] for r in m["requests"]} == {("rerank", "ok"): 1,
                                                                            ("score", "overloaded"): 1}
    assert m["real_tokens"] == 12 and m["padded_tokens"] == 16
    assert m["histograms"]["batch_size_pairs"]["counts"][1] == 1  # the bucket of size 2
    assert m["histograms"]["inference_duration_seconds"]["sum"] == pytest.approx(0.003)
