"""Worker registry: credits, liveness, requeue of a dead worker's batches, late replies."""

from __future__ import annotations

from rerankpool.broker.batching import Pair
from rerankpool.broker.registry import Batch, LivenessConfig, WorkerRegistry
from rerankpool.protocol import WorkerInfo


def info(capacity: int = 2, model: str = "m") -> WorkerInfo:
    return WorkerInfo(model, "label", "torch", "cpu", "float32", capacity, 1, "h", 512)


def batch(i: int) -> Batch:
    return Batch(i, [Pair("r", i, "q", "d", 10)])


def test_pick_prefers_least_loaded_then_least_recently_used():
    reg = WorkerRegistry()
    reg.register(b"a", info(), 0.0)
    reg.register(b"b", info(), 0.0)
    first = reg.pick("m")
    reg.assign(first, batch(1), now=1.0)
    second = reg.pick("m")
    assert second.identity != first.identity
    reg.assign(second, batch(2), now=2.0)
    assert reg.pick("m").identity == first.identity  # both hold 1; a was used longer ago


def test_credit_is_never_exceeded():
    reg = WorkerRegistry()
    reg.register(b"a", info(capacity=2), 0.0)
    w = reg.pick("m")
    reg.assign(w, batch(1), 0.0)
    reg.assign(w, batch(2), 0.0)
    assert reg.pick("m") is None
    assert reg.pick("m", idle_only=True) is None
    assert reg.complete(b"a", 1) is not None
    assert reg.pick("m") is w and reg.pick("m", idle_only=True) is None


def test_dead_worker_is_purged_with_its_batches():
    reg = WorkerRegistry(LivenessConfig(heartbeat_interval_s=1.0, liveness=3))
    reg.register(b"a", info(), 0.0)
    reg.register(b"b", info(), 0.0)
    reg.assign(reg.get(b"a"), batch(7), 0.0)
    assert reg.touch(b"b", 2.5)
    dead = reg.purge(3.0)
    assert [(w.identity, [x.id for x in batches]) for w, batches in dead] == [(b"a", [7])]
    assert b"a" not in reg and b"b" in reg


def test_late_reply_from_a_dead_worker_is_discarded():
    reg = WorkerRegistry()
    reg.register(b"a", info(), 0.0)
    reg.assign(reg.get(b"a"), batch(1), 0.0)
    reg.purge(100.0)
    assert reg.complete(b"a", 1) is None
    assert not reg.touch(b"a", 100.0)


def test_duplicate_result_is_discarded():
    reg = WorkerRegistry()
    reg.register(b"a", info(), 0.0)
    reg.assign(reg.get(b"a"), batch(1), 0.0)
    assert reg.complete(b"a", 1) is not None
    assert reg.complete(b"a", 1) is None


def test_reregistering_identity_returns_its_lost_batches():
    reg = WorkerRegistry()
    reg.register(b"a", info(), 0.0)
    reg.assign(reg.get(b"a"), batch(3), 0.0)
    assert [b.id for b in reg.register(b"a", info(), 1.0)] == [3]
    assert reg.get(b"a").in_flight == {}


def test_draining_worker_gets_no_more_batches():
    reg = WorkerRegistry()
    reg.register(b"a", info(), 0.0)
    reg.get(b"a").draining = True
    assert reg.pick("m") is None


def test_pick_and_idle_count_see_only_the_models_workers():
    reg = WorkerRegistry()
    reg.register(b"a", info(model="a"), 0.0)
    reg.register(b"b", info(model="b"), 0.0)
    assert reg.pick("a").identity == b"a" and reg.pick("b").identity == b"b" and reg.pick("c") is None
    reg.assign(reg.pick("a"), batch(1), now=1.0)
    assert reg.idle_count("a") == 0 and reg.idle_count("b") == 1
    assert [w.identity for w in reg.serving("b")] == [b"b"]
