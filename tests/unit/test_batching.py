"""The length-bucketed batcher, driven with an explicit clock."""

from __future__ import annotations

import pytest

from rerankpool.broker.batching import Batcher, BatchingConfig, Pair, estimate_tokens


def pairs(n: int, tokens: int, key: object = "r", start: int = 0) -> list[Pair]:
    return [Pair(key, start + i, "q", "d", tokens) for i in range(n)]


def test_estimate_tokens_grows_with_text_and_is_capped():
    short = estimate_tokens("what is x", "x is a letter")
    long = estimate_tokens("what is x", "x is a letter " * 50)
    assert 3 < short < long
    assert estimate_tokens("q", "w " * 10_000, max_length=512) == 512


def test_pairs_go_to_the_smallest_bucket_that_holds_them():
    b = Batcher(BatchingConfig(bucket_edges=(32, 64, 128)))
    b.add(pairs(1, 10) + pairs(1, 33) + pairs(1, 64) + pairs(1, 999), now=0.0)
    assert b.depths() == {32: 1, 64: 2, 128: 1}


def test_full_bucket_is_due_at_once_and_cut_at_max_batch():
    b = Batcher(BatchingConfig(max_batch=4, timeout_ms=1000, bucket_edges=(32, 64)))
    b.add(pairs(6, 20), now=0.0)
    batch = b.pop_due(now=0.0)
    assert batch is not None and [p.index for p in batch] == [0, 1, 2, 3]
    assert b.pop_due(now=0.0) is None  # 2 left: not full, not old
    assert len(b) == 2


def test_token_budget_limits_a_batch():
    b = Batcher(BatchingConfig(max_batch=100, max_batch_tokens=256, timeout_ms=1000, bucket_edges=(64, 128)))
    b.add(pairs(10, 100), now=0.0)  # bucket 128: 2 pairs fill 256 tokens
    batch = b.pop_due(now=0.0)
    assert batch is not None and len(batch) == 2


def test_one_pair_over_the_budget_still_ships_alone():
    b = Batcher(BatchingConfig(max_batch=8, max_batch_tokens=16, timeout_ms=0, bucket_edges=(512,)))
    b.add(pairs(2, 500), now=0.0)
    assert len(b.pop_due(now=0.0)) == 1


def test_partial_bucket_becomes_due_after_timeout():
    b = Batcher(BatchingConfig(max_batch=64, timeout_ms=5, bucket_edges=(32, 64)))
    b.add(pairs(3, 20), now=1.0)
    assert b.pop_due(now=1.004) is None
    assert b.next_deadline() == pytest.approx(1.005)
    batch = b.pop_due(now=1.005)
    assert batch is not None and len(batch) == 3


def test_most_overdue_bucket_goes_first():
    b = Batcher(BatchingConfig(max_batch=64, timeout_ms=5, bucket_edges=(32, 64)))
    b.add(pairs(2, 50, key="late"), now=2.0)
    b.add(pairs(2, 20, key="early"), now=1.0)
    assert {p.key for p in b.pop_due(now=3.0)} == {"early"}


def test_pop_any_serves_an_idle_worker_oldest_first_across_buckets():
    b = Batcher(BatchingConfig(max_batch=5, timeout_ms=1000, bucket_edges=(32, 64, 128)))
    b.add(pairs(3, 100, key="old"), now=0.0)
    b.add(pairs(3, 20, key="new"), now=0.5)
    assert b.pop_due(now=0.6) is None
    batch = b.pop_any(now=0.6)
    assert [p.key for p in batch] == ["old"] * 3 + ["new"] * 2
    assert len(b) == 1


def test_pairs_of_ended_requests_are_dropped_before_batching():
    live = {"keep"}
    b = Batcher(BatchingConfig(max_batch=4, timeout_ms=0, bucket_edges=(64,)), is_live=lambda k: k in live)
    b.add(pairs(3, 20, key="gone") + pairs(2, 20, key="keep"), now=0.0)
    batch = b.pop_due(now=0.0)
    assert [p.key for p in batch] == ["keep", "keep"]
    assert len(b) == 0


def test_requeued_pairs_go_first_and_keep_their_age():
    b = Batcher(BatchingConfig(max_batch=2, timeout_ms=10, bucket_edges=(64,)))
    b.add(pairs(1, 20, key="new"), now=5.0)
    lost = pairs(2, 20, key="lost")
    for p in lost:
        p.enqueued_at = 1.0
    b.requeue(lost)
    assert b.next_deadline() == pytest.approx(1.010)
    assert [p.key for p in b.pop_due(now=5.0)] == ["lost", "lost"]


BAD_CONFIGS = [dict(max_batch=0), dict(timeout_ms=-1), dict(bucket_edges=(64, 32)), dict(bucket_edges=())]


@pytest.mark.parametrize("bad", BAD_CONFIGS)
def test_config_rejects_nonsense(bad):
    with pytest.raises(ValueError):
        BatchingConfig(**bad)


def test_packed_workers_pay_each_pairs_tokens_in_one_queue():
    b = Batcher(BatchingConfig(max_batch_tokens=100, timeout_ms=1000, bucket_edges=(32, 64, 128)))
    b.set_packed(True)
    b.add(pairs(3, 10) + pairs(3, 40, start=3), now=0.0)
    assert b.depths() == {128: 6}  # no padding to save: one bucket
    batch = b.pop_due(now=0.0)  # 150 tokens queued: full at 100, where padded pairs would cost 6 x 128
    assert [p.index for p in batch] == [0, 1, 2, 3]  # 10+10+10+40 = 70; one more 40 would pass 100
    assert b.pop_due(now=0.0) is None and len(b) == 2
    b.set_packed(False)
    b.add(pairs(2, 40), now=0.0)
    assert b.depths() == {128: 2, 64: 2}  # padded workers again: new pairs go to buckets by length


def test_limits_follow_the_workers_kind_unless_set():
    assert BatchingConfig().limits(packed=False) == (64, 16_384)
    assert BatchingConfig().limits(packed=True) == (256, 131_072)
    assert BatchingConfig(max_batch=8).limits(packed=True) == (8, 131_072)
    b = Batcher(BatchingConfig(timeout_ms=1000, bucket_edges=(512,)))
    b.set_packed(True)
    b.add(pairs(300, 50), now=0.0)
    assert len(b.pop_due(now=0.0)) == 256  # full at 256 pairs, where padded workers' batches stop at 64
