"""Request reassembly: order, activation, top_k, deadlines and exactly-once answers."""

from __future__ import annotations

import numpy as np
import pytest

from rerankpool.broker.assembly import BatchCost, RequestTable, finalize
from rerankpool.protocol import OP_RERANK, OP_SCORE, ErrorCode, Request


def rerank(docs: list[str], top_k: int | None = None, activation: str = "raw", timeout_ms: int | None = None):
    return Request(1, OP_RERANK, ["q"], None, docs, top_k, activation, timeout_ms)


def test_scores_are_reassembled_in_input_order_from_any_batch_order():
    table = RequestTable()
    pairs = table.add((b"c", 1), Request(1, OP_SCORE, ["q"], None, list("abcd")), now=0.0, default_timeout_ms=None)
    assert table.fill([pairs[3], pairs[1]], np.array([3.0, 1.0], np.float32)) == []
    [done] = table.fill([pairs[2], pairs[0]], np.array([2.0, 0.0], np.float32))
    assert done.ok and done.scores.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert len(table) == 0 and table.answered == 1


def test_finalize_sorts_and_cuts_for_rerank():
    scores, idx = finalize(rerank(list("abcd"), top_k=2), np.array([0.1, 0.9, -1.0, 0.5], np.float32))
    assert idx.tolist() == [1, 3] and scores.tolist() == pytest.approx([0.9, 0.5])


def test_finalize_sigmoid_and_score_order():
    req = Request(1, OP_SCORE, ["q"], None, ["a", "b"], activation="sigmoid")
    scores, idx = finalize(req, np.array([0.0, 2.0], np.float32))
    assert idx is None and scores.tolist() == pytest.approx([0.5, 1 / (1 + np.exp(-2.0))])


def test_expired_request_is_answered_once_and_late_scores_are_dropped():
    table = RequestTable()
    pairs = table.add((b"c", 1), rerank(["a", "b"], timeout_ms=100), now=0.0, default_timeout_ms=None)
    assert table.expire(0.05) == []
    [out] = table.expire(0.1)
    assert out.error_code == ErrorCode.TIMEOUT and "0/2" in out.error_message
    assert table.fill(pairs, np.array([1.0, 2.0], np.float32)) == []
    assert table.fail((b"c", 1), ErrorCode.WORKER_ERROR, "x") is None
    assert table.answered == 1


def test_default_timeout_applies_when_request_names_none():
    table = RequestTable()
    table.add((b"c", 1), rerank(["a"]), now=0.0, default_timeout_ms=500)
    assert table.next_deadline() == pytest.approx(0.5)


def test_duplicate_key_is_refused():
    table = RequestTable()
    table.add((b"c", 1), rerank(["a"]), 0.0, None)
    with pytest.raises(KeyError):
        table.add((b"c", 1), rerank(["a"]), 0.0, None)


def test_pairs_carry_their_query_and_a_length_estimate():
    table = RequestTable()
    req = Request(1, OP_SCORE, ["short q", "another query"], [1, 0], ["doc one", "a much longer document " * 20])
    p0, p1 = table.add((b"c", 1), req, 0.0, None)
    assert (p0.query, p1.query) == ("another query", "short q")
    assert p1.tokens > p0.tokens


def test_usage_sums_tokens_and_averages_stage_times_over_the_pairs():
    table = RequestTable()
    pairs = table.add((b"c", 1), Request(1, OP_SCORE, ["q"], None, list("abc")), now=0.0, default_timeout_ms=None)
    first = BatchCost(np.array([10, 20]), np.array([1.0, 3.0]), tokenize_ms=2.0, inference_ms=4.0)
    assert table.fill(pairs[:2], np.zeros(2, np.float32), first) == []
    second = BatchCost(np.array([30]), np.array([5.0]), tokenize_ms=5.0, inference_ms=7.0)
    [done] = table.fill(pairs[2:], np.zeros(1, np.float32), second)
    assert done.usage == pytest.approx({"tokens": 60, "queue_ms": 3.0, "tokenize_ms": 3.0, "inference_ms": 5.0})


def test_a_failed_request_has_no_usage():
    table = RequestTable()
    table.add((b"c", 1), rerank(["a"]), 0.0, None)
    assert table.fail((b"c", 1), ErrorCode.WORKER_ERROR, "x").usage is None
