"""Property tests of the whole broker logic (BrokerCore) under any order of events.

Hypothesis draws batching limits, requests for two models (or the default one), worker
joins for either model, deaths and result orders. Whatever it draws, every request is
answered exactly once, every pair's score is taken exactly once, and each score is the
one computed for that pair by a worker of the model the request named.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rerankpool.broker.assembly import aggregate
from rerankpool.broker.batching import BatchingConfig
from rerankpool.broker.core import CoreConfig, BrokerCore
from rerankpool.broker.registry import LivenessConfig
from rerankpool.protocol import OP_RERANK, OP_SCORE, Chunking, ErrorCode, Request, Truncation, WorkerInfo


MODELS = ("a", "b")


SPLIT_OVER = 20  # a simulated worker splits a chunked request's document longer than this many characters


def char_windows(doc: str) -> list[tuple[int, int, int]]:
    """The simulated worker's windows: 12 characters, every 8."""
    return [(s, min(s + 12, len(doc)), 12) for s in range(0, max(1, len(doc) - 4), 8)]


def pair_score(query: str, doc: str, model: str = "m") -> float:
    """What a worker of ``model`` scores a pair: each model scores every pair differently."""
    return zlib.crc32(f"{model}|{query}|{doc}".encode()) / 2**32


def info(capacity: int, packed: bool = False, model: str = "m") -> WorkerInfo:
    return WorkerInfo(model, model, "null", "cpu", "float32", capacity, 0, "sim", 512, packed)


configs = st.builds(
    BatchingConfig,
    max_batch=st.integers(1, 12),
    max_batch_tokens=st.integers(16, 2048),
    timeout_ms=st.floats(0, 20),
    bucket_edges=st.sampled_from([(512,), (32, 64, 128, 512), (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)]),
    split_min=st.sampled_from([0, 1, 3, 8]),
)
docs = st.lists(st.text(alphabet="abc ", min_size=0, max_size=300), min_size=1, max_size=15)
# op, docs, queries, model (an index into MODELS once a worker of it has joined; None: the default), chunking
requests = st.lists(st.tuples(st.sampled_from([OP_RERANK, OP_SCORE]), docs, st.integers(1, 3),
                              st.sampled_from([None, 0, 1]), st.sampled_from([None, None, "max", "mean", "first"])),
                    min_size=1, max_size=8)
actions = st.lists(
    st.one_of(
        st.tuples(st.just("submit")),
        st.tuples(st.just("advance"), st.floats(0, 0.05)),
        st.tuples(st.just("complete"), st.integers(0, 50), st.integers(0, 50)),
        st.tuples(st.just("kill"), st.integers(0, 50)),
        st.tuples(st.just("join"), st.integers(2, 4), st.booleans(), st.sampled_from(MODELS)),  # capacity, packs
    ),
    max_size=80,
)


class Simulation:
    def __init__(self, batching: BatchingConfig, timeout_ms: int | None) -> None:
        config = CoreConfig(batching=batching, liveness=LivenessConfig(1.0, 3), request_timeout_ms=timeout_ms)
        self.core = BrokerCore(config)
        self.now = 0.0
        self.live: list[bytes] = []
        self.dead: list[bytes] = []
        self.held: dict[bytes, list] = {}  # batches a worker holds, dead ones included (late replies)
        self.answers: dict[tuple, list] = {}
        self.pairs: dict[tuple, tuple[list[str], list[str], str | None]] = {}  # per request: queries, docs, model
        self.model_of: dict[bytes, str] = {}
        self._ids = 0

    def join(self, capacity: int, packed: bool = False, model: str = MODELS[0]) -> None:
        ident = f"w{len(self.live) + len(self.dead)}".encode()
        assert self.core.register(ident, info(capacity, packed, model), self.now) is None
        self.live.append(ident)
        self.held[ident] = []
        self.model_of[ident] = model

    def submit(self, op: str, texts: list[str], n_queries: int, model: int | None = None,
               chunking: str | None = None) -> None:
        self._ids += 1
        queries = [f"query {i}" for i in range(n_queries if op == OP_SCORE else 1)]
        index = [i % len(queries) for i in range(len(texts))] if len(queries) > 1 else None
        name = MODELS[model] if model is not None and MODELS[model] in self.core.models else None
        req = Request(self._ids, op, queries, index, texts, model=name,
                      chunking=Chunking(chunking) if chunking else None)
        key = (b"client", self._ids)
        self.pairs[key] = ([queries[req.query_of(i)] for i in range(len(texts))], texts, name, chunking)
        self.answers[key] = []
        assert self.core.admit(key, req, self.now) is None

    def expected(self, key: tuple) -> np.ndarray:
        """The request's scores by its model (the one it named, else the default: the first to join); a chunked
        request's long documents by the aggregate of their windows' scores."""
        queries, texts, model, chunking = self.pairs[key]
        model = model or self.core.default_model
        scores = []
        for q, d in zip(queries, texts):
            if chunking and len(d) > SPLIT_OVER:
                windows = np.array([pair_score(q, d[s:e], model) for s, e, _ in char_windows(d)], np.float32)
                scores.append(aggregate(chunking, windows)[0])
            else:
                scores.append(pair_score(q, d, model))
        return np.array(scores, np.float32)

    def step(self) -> None:
        for ident in self.live:
            self.core.workers.touch(ident, self.now)
        _, lost = self.core.purge(self.now)
        for outcome in self.core.expire(self.now) + lost:
            self.answers[outcome.key].append(outcome)
        for worker, batch in self.core.dispatch(self.now):
            assert worker.identity in self.live
            assert len(worker.in_flight) <= worker.info.capacity
            assert batch.model == self.model_of[worker.identity]  # a batch goes to a worker of its model only
            self.held[worker.identity].append(batch)

    def complete(self, w: int, b: int) -> None:
        holders = [i for i in self.held if self.held[i]]
        if not holders:
            return
        ident = holders[w % len(holders)]
        batch = self.held[ident].pop(b % len(self.held[ident]))
        scores = np.array([pair_score(p.query, p.doc, self.model_of[ident]) for p in batch.pairs], np.float32)
        windows = {i: char_windows(p.doc) for i, p in enumerate(batch.pairs)
                   if p.chunking is not None and len(p.doc) > SPLIT_OVER}
        scores[list(windows)] = np.nan  # a split document's own pair is not scored
        _, outcomes = self.core.on_result(ident, batch.id, scores, self.now, windows=windows)
        for outcome in outcomes:
            self.answers[outcome.key].append(outcome)

    def kill(self, w: int) -> None:
        if self.live:
            self.dead.append(self.live.pop(w % len(self.live)))
            self.now += 3.5  # past the liveness window: the next step purges it

    def finish(self) -> None:
        for model in self.core.models or [MODELS[0]]:  # a worker for every model that has requests to serve
            if not any(self.model_of[i] == model for i in self.live):
                self.join(2, model=model)
        for _ in range(10_000):
            self.step()
            # Done when every request is answered and the live workers have returned what they
            # hold (a batch of a request that already failed still runs; its result is discarded).
            if not len(self.core.requests) and not any(self.held[i] for i in self.live):
                return
            if any(self.held[i] for i in self.live):
                self.complete(next(k for k, i in enumerate(i for i in self.held if self.held[i])
                                   if i in self.live), 0)
            else:
                self.now += 0.01
        raise AssertionError("simulation did not finish")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batching=configs, reqs=requests, events=actions, n_workers=st.integers(0, 3))
def test_every_request_answered_once_with_its_own_scores(batching, reqs, events, n_workers):
    sim = Simulation(batching, timeout_ms=None)
    for _ in range(n_workers):
        sim.join(2)
    pending = list(reqs)
    for action in events:
        if action[0] == "submit" and pending:
            sim.submit(*pending.pop())
        elif action[0] == "advance":
            sim.now += action[1]
        elif action[0] == "complete":
            sim.complete(action[1], action[2])
        elif action[0] == "kill":
            sim.kill(action[1])
        elif action[0] == "join":
            sim.join(action[1], action[2], action[3])
        sim.step()
    for req in pending:
        sim.submit(*req)
    sim.finish()

    assert sim.core.requests.duplicates == 0
    assert len(sim.answers) == len(reqs)
    for key, answers in sim.answers.items():
        assert len(answers) == 1, f"request {key} answered {len(answers)} times"
        if answers[0].ok:
            np.testing.assert_array_equal(answers[0].scores, sim.expected(key))
        else:  # only a pair that was alone in batches that died max_pair_failures times
            assert answers[0].error_code == ErrorCode.WORKER_ERROR and "made the model fail" in answers[0].error_message
    if not sim.dead:
        assert all(a[0].ok for a in sim.answers.values())
    assert sim.core.queued_pairs == 0 and sim.core.workers.in_flight_batches() == 0


@settings(max_examples=60, deadline=None)
@given(
    batching=configs,
    reqs=requests,
    timeout_ms=st.integers(1, 50),
    advances=st.lists(st.floats(0, 0.03), max_size=30),
)
def test_with_deadlines_each_request_gets_scores_or_one_timeout(batching, reqs, timeout_ms, advances):
    sim = Simulation(batching, timeout_ms=timeout_ms)
    sim.join(2)
    for req in reqs:
        sim.submit(*req)
    for dt in advances:
        sim.now += dt
        sim.step()
        sim.complete(0, 0)
    sim.finish()
    for key, answers in sim.answers.items():
        assert len(answers) == 1
        if answers[0].ok:
            np.testing.assert_array_equal(answers[0].scores, sim.expected(key))
        else:
            assert answers[0].error_code == ErrorCode.TIMEOUT


def test_overload_is_refused_at_once_and_nothing_is_queued():
    core = BrokerCore(CoreConfig(max_queued_pairs=5))
    assert core.admit((b"c", 1), Request(1, OP_SCORE, ["q"], None, ["d"] * 4), 0.0) is None
    code, message = core.admit((b"c", 2), Request(2, OP_SCORE, ["q"], None, ["d"] * 2), 0.0)
    assert code == ErrorCode.OVERLOADED and "limit 5" in message
    assert core.queued_pairs == 4 and len(core.requests) == 1


def test_no_workers_at_deadline_says_so():
    core = BrokerCore(CoreConfig(request_timeout_ms=100))
    core.admit((b"c", 1), Request(1, OP_SCORE, ["q"], None, ["d"]), 0.0)
    [outcome] = core.expire(0.2)
    assert outcome.error_code == ErrorCode.NO_WORKERS


def test_a_restarted_broker_discards_results_of_the_old_ones_batches():
    """A worker that reconnects to a restarted broker may still send the old broker's results."""
    old, new = BrokerCore(), BrokerCore()
    sent = []
    for core in (old, new):
        core.register(b"w", info(2), 0.0)
        core.admit((b"c", 1), Request(1, OP_SCORE, ["q"], None, ["d"] * 3), 0.0)
        [(_, batch)] = core.dispatch(0.0)
        sent.append(batch)
    stale = sent[0]  # the old broker's batch, answered to the new one
    assert new.on_result(b"w", stale.id, np.zeros(3, np.float32), 0.1) == (None, [])
    assert new.workers.in_flight_batches() == 1  # its own batch still waits for its own result
    batch, [outcome] = new.on_result(b"w", sent[1].id, np.ones(3, np.float32), 0.1)
    assert batch is sent[1] and list(outcome.scores) == [1.0, 1.0, 1.0]


def test_a_model_never_served_is_refused_naming_the_served_ones():
    core = BrokerCore()
    code, message = core.admit((b"c", 1), Request(1, OP_SCORE, ["q"], None, ["d"], model="a"), 0.0)
    assert code == ErrorCode.UNKNOWN_MODEL and "none yet" in message
    for ident, model in ((b"w1", "a"), (b"w2", "b")):
        assert core.register(ident, info(2, model=model), 0.0) is None
    code, message = core.admit((b"c", 2), Request(2, OP_SCORE, ["q"], None, ["d"], model="c"), 0.0)
    assert code == ErrorCode.UNKNOWN_MODEL and "served: 'a', 'b'" in message
    assert core.queued_pairs == 0 and len(core.requests) == 0
    assert core.counters.metrics.requests == {("score", ErrorCode.UNKNOWN_MODEL, ""): 2}  # no label for "c"


def test_requests_that_name_no_model_go_to_the_first_one_served():
    core = BrokerCore()
    assert core.admit((b"c", 1), Request(1, OP_SCORE, ["q"], None, ["d"] * 3), 0.0) is None  # before any worker
    core.register(b"w1", info(2, model="b"), 0.0)
    core.register(b"w2", info(2, model="a"), 0.0)
    assert core.default_model == "b" and core.models == ["b", "a"]
    core.admit((b"c", 2), Request(2, OP_SCORE, ["q"], None, ["d"]), 0.0)
    sends = core.dispatch(0.0)
    assert {(w.identity, b.model) for w, b in sends} == {(b"w1", "b")}
    assert sum(len(b.pairs) for _, b in sends) == 4 and core.queued_pairs == 0


def test_a_models_last_worker_dying_leaves_its_requests_waiting_until_their_deadline():
    """Its queued and in-flight pairs wait for a worker of that model: one that comes in time serves them;
    else the request gets no_workers naming the model, and the other model's requests are untouched."""
    one_request_a_batch = BatchingConfig(max_batch=2, bucket_edges=(512,))
    core = BrokerCore(CoreConfig(batching=one_request_a_batch, request_timeout_ms=1000,
                                 liveness=LivenessConfig(1.0, 3)))
    core.register(b"a1", info(1, model="a"), 0.0)
    core.register(b"b1", info(1, model="b"), 0.0)
    for rid, model in ((1, "a"), (2, "a"), (3, "b")):
        assert core.admit((b"c", rid), Request(rid, OP_SCORE, ["q"], None, ["d"] * 2, model=model), 0.0) is None
    sent = {b.model: (w, b) for w, b in core.dispatch(0.0)}
    core.remove_worker(b"a1")  # said bye mid-batch: its batch goes back to model a's queue
    assert core.dispatch(0.1) == [] and core.lanes["a"].queued_pairs == 4
    _, [ok] = core.on_result(b"b1", sent["b"][1].id, np.ones(2, np.float32), 0.2)
    assert ok.ok and ok.key == (b"c", 3)
    core.register(b"a2", info(1, model="a"), 0.5)  # a worker for a comes back in time
    [(worker, batch)] = core.dispatch(0.5)
    assert worker.identity == b"a2" and batch.model == "a"
    _, outcomes = core.on_result(b"a2", batch.id, np.ones(len(batch.pairs), np.float32), 0.6)
    served = {o.key for o in outcomes}
    core.remove_worker(b"a2")
    late = [o for o in core.expire(1.5) if o.key not in served]
    assert late and all(o.error_code == ErrorCode.NO_WORKERS and "model 'a'" in o.error_message for o in late)


def test_the_queue_bound_applies_per_model_as_well_as_overall():
    core = BrokerCore(CoreConfig(max_queued_pairs=10))
    core.register(b"a1", info(2, model="a"), 0.0)
    core.register(b"b1", info(2, model="b"), 0.0)
    assert core.per_model_bound() == 5
    assert core.admit((b"c", 1), Request(1, OP_SCORE, ["q"], None, ["d"] * 5, model="a"), 0.0) is None
    code, message = core.admit((b"c", 2), Request(2, OP_SCORE, ["q"], None, ["d"], model="a"), 0.0)
    assert code == ErrorCode.OVERLOADED and "for model 'a' (limit 5 a model)" in message
    assert core.admit((b"c", 3), Request(3, OP_SCORE, ["q"], None, ["d"] * 5, model="b"), 0.0) is None
    one = BrokerCore(CoreConfig(max_queued_pairs=10))
    one.register(b"a1", info(2, model="a"), 0.0)
    assert one.per_model_bound() == 10  # one model: the overall bound


def test_idle_worker_is_served_at_once_busy_workers_wait_for_full_batches():
    core = BrokerCore(CoreConfig(batching=BatchingConfig(max_batch=4, timeout_ms=10, bucket_edges=(512,))))
    core.register(b"a", info(3), 0.0)
    core.admit((b"c", 1), Request(1, OP_SCORE, ["q"], None, ["d"] * 2), 0.0)
    [(_, first)] = core.dispatch(0.0)  # idle worker: partial batch goes now
    assert len(first.pairs) == 2
    core.admit((b"c", 2), Request(2, OP_SCORE, ["q"], None, ["d"] * 2), 0.001)
    assert core.dispatch(0.001) == []  # busy: waits for a full batch or the timeout
    core.admit((b"c", 3), Request(3, OP_SCORE, ["q"], None, ["d"] * 2), 0.002)
    [(_, full)] = core.dispatch(0.002)
    assert len(full.pairs) == 4
    core.admit((b"c", 4), Request(4, OP_SCORE, ["q"], None, ["d"]), 0.003)
    assert core.dispatch(0.012) == []  # 2 in flight of 3: partial batch waits until 0.013
    assert len(core.dispatch(0.0131)) == 1


def test_idle_workers_share_a_small_request():
    """A lone 32-pair request on 4 idle workers goes out as 4 batches of 8, so 4 tokenizers work on it."""
    batching = BatchingConfig(max_batch=256, max_batch_tokens=1 << 20, bucket_edges=(512,), split_min=8)
    core = BrokerCore(CoreConfig(batching=batching))
    for name in (b"a", b"b", b"c", b"d"):
        core.register(name, info(2), 0.0)
    core.admit((b"c", 1), Request(1, OP_SCORE, ["q"], None, ["d"] * 32), 0.0)
    sends = core.dispatch(0.0)
    assert sorted(len(batch.pairs) for _, batch in sends) == [8, 8, 8, 8]
    assert len({worker.identity for worker, _ in sends}) == 4
    # Fewer pairs than split_min per worker: fewer, fuller batches; split_min=0 never splits.
    core.admit((b"c", 2), Request(2, OP_SCORE, ["q"], None, ["d"] * 10), 0.0)
    assert core.dispatch(0.0) == []  # every worker is busy now: the pairs wait for a full batch or the timeout
    unsplit = BrokerCore(CoreConfig(batching=BatchingConfig(bucket_edges=(512,), split_min=0)))
    for name in (b"a", b"b"):
        unsplit.register(name, info(2), 0.0)
    unsplit.admit((b"c", 1), Request(1, OP_SCORE, ["q"], None, ["d"] * 10), 0.0)
    assert [len(batch.pairs) for _, batch in unsplit.dispatch(0.0)] == [10]


def test_idle_workers_split_no_finer_than_split_min():
    core = BrokerCore(CoreConfig(batching=BatchingConfig(bucket_edges=(512,), split_min=8)))
    for name in (b"a", b"b", b"c", b"d"):
        core.register(name, info(2), 0.0)
    core.admit((b"c", 1), Request(1, OP_SCORE, ["q"], None, ["d"] * 10), 0.0)
    assert sorted(len(batch.pairs) for _, batch in core.dispatch(0.0)) == [2, 8]


@settings(max_examples=40, deadline=None)
@given(batching=configs, reqs=requests, poison_at=st.integers(0, 1000))
def test_a_poison_pair_fails_only_its_request_and_neighbours_are_scored(batching, reqs, poison_at):
    sim = Simulation(batching, timeout_ms=None)
    sim.join(2)
    for req in reqs:
        sim.submit(*req)
    all_pairs = [(key, i) for key, (_, texts, _, _) in sim.pairs.items() for i in range(len(texts))]
    poison_key, poison_index = all_pairs[poison_at % len(all_pairs)]
    for _ in range(10_000):
        sim.step()
        if not len(sim.core.requests):
            break
        holder = next((i for i in sim.live if sim.held[i]), None)
        if holder is None:
            sim.now += 0.01
            continue
        batch = sim.held[holder].pop(0)
        if any(p.key == poison_key and p.index == poison_index for p in batch.pairs):
            outcomes = sim.core.on_failed(holder, batch.id, "ValueError: bad doc")
        else:
            scores = np.array([pair_score(p.query, p.doc, sim.model_of[holder]) for p in batch.pairs], np.float32)
            windows = {i: char_windows(p.doc) for i, p in enumerate(batch.pairs)
                       if p.chunking is not None and len(p.doc) > SPLIT_OVER}
            outcomes = sim.core.on_result(holder, batch.id, scores, sim.now, windows=windows)[1]
        for outcome in outcomes:
            sim.answers[outcome.key].append(outcome)
    for key, answers in sim.answers.items():
        assert len(answers) == 1
        if key == poison_key:
            assert answers[0].error_code == ErrorCode.WORKER_ERROR
            assert f"document {poison_index} made the model fail" in answers[0].error_message
        else:
            assert answers[0].ok
            np.testing.assert_array_equal(answers[0].scores, sim.expected(key))


def test_a_worker_dying_with_several_batches_blames_none_and_retries_each_alone():
    """Its oldest batch may have finished (the result lost with the process): no blame until a suspect dies alone."""
    liveness = LivenessConfig(1.0, 3)
    core = BrokerCore(CoreConfig(batching=BatchingConfig(max_batch=1, bucket_edges=(512,)), liveness=liveness))
    core.register(b"w1", info(2), 0.0)
    core.admit((b"c", 1), Request(1, OP_SCORE, ["q"], None, ["innocent", "poison"]), 0.0)
    held = core.dispatch(0.0)
    assert [worker.identity for worker, _ in held] == [b"w1", b"w1"]
    core.register(b"w2", info(2), 3.5)
    core.register(b"w3", info(2), 3.5)
    _, outcomes = core.purge(3.5)  # w1 missed its heartbeats
    assert outcomes == [] and all(p.failures == 0 for _, b in held for p in b.pairs)
    retries = core.dispatch(3.5)
    assert sorted(w.identity for w, _ in retries) == [b"w2", b"w3"]  # one suspect per idle worker
    assert all(b.exclusive and len(b.pairs) == 1 for _, b in retries)
    assert all(w.free_credit == 0 for w, _ in retries)  # nothing else joins a suspect
    innocent = next(b for _, b in retries if b.pairs[0].doc == "innocent")
    poison = next(b for _, b in retries if b.pairs[0].doc == "poison")
    innocent_holder = next(w for w, b in retries if b is innocent)
    core.on_result(innocent_holder.identity, innocent.id, np.zeros(1, np.float32), 3.6)
    dead_holder = next(w for w, b in retries if b is poison)
    dead_holder.expires_at = 0.0  # the worker running the poison alone dies too
    core.purge(3.7)
    assert poison.pairs[0].failures == 1 and innocent.pairs[0].failures == 0  # now the blame is certain


def test_batches_are_priced_for_packing_only_while_every_live_worker_packs():
    core = BrokerCore(CoreConfig(liveness=LivenessConfig(1.0, 3)))
    core.register(b"gpu1", info(2, packed=True), 0.0)
    batcher = core.lanes["m"].batcher
    assert batcher.packed and batcher.max_pairs == 256
    core.register(b"cpu", info(2, packed=False), 0.0)
    assert not batcher.packed and batcher.max_pairs == 64
    core.register(b"other", info(2, packed=False, model="other"), 0.0)  # another model's workers do not count
    core.remove_worker(b"cpu")
    assert batcher.packed and not core.lanes["other"].batcher.packed
    core.register(b"gpu2", info(2, packed=True), 2.0)
    core.purge(3.5)  # gpu1's heartbeats stopped at 0.0: dead; gpu2 still packs
    assert [w.identity for w in core.workers.serving("m")] == [b"gpu2"] and batcher.packed


def test_a_configured_default_model_is_known_before_its_workers_and_wins_over_the_first_to_register():
    core = BrokerCore(CoreConfig(default_model="a"))
    assert core.admit((b"c", 1), Request(1, OP_SCORE, ["q"], None, ["d"]), 0.0) is None  # waits for a's workers
    core.register(b"b1", info(2, model="b"), 0.0)  # b registers first, yet a stays the default
    core.register(b"a1", info(2, model="a"), 0.0)
    assert core.default_model == "a" and core.models == ["a", "b"]
    [(worker, batch)] = core.dispatch(0.0)
    assert worker.identity == b"a1" and batch.model == "a"


def test_a_pair_a_worker_refuses_fails_only_its_request():
    """A worker names a pair too long for its request (truncate=false): that request gets too_large naming its
    document; the other request in the batch gets its scores."""
    core = BrokerCore()
    core.register(b"w", info(2), 0.0)
    strict = Request(1, OP_SCORE, ["q"], None, ["short", "long one"], truncation=Truncation(truncate=False))
    core.admit((b"c", 1), strict, 0.0)
    core.admit((b"c", 2), Request(2, OP_SCORE, ["q"], None, ["x"]), 0.0)
    [(_, batch)] = core.dispatch(0.0)
    long_at = next(i for i, p in enumerate(batch.pairs) if p.doc == "long one")
    _, outcomes = core.on_result(b"w", batch.id, np.ones(3, np.float32), 0.1,
                                 refused={long_at: "600 tokens with its query; the model's window is 512"})
    by_key = {o.key: o for o in outcomes}
    assert by_key[(b"c", 1)].error_code == ErrorCode.TOO_LARGE
    assert by_key[(b"c", 1)].error_message.startswith("document 1 is too long: 600 tokens")
    assert by_key[(b"c", 2)].ok and list(by_key[(b"c", 2)].scores) == [1.0]
    assert [p.truncation for p in batch.pairs if p.key == (b"c", 1)] == [Truncation(truncate=False)] * 2


def test_windows_that_would_pass_the_queue_bound_fail_their_request_with_the_numbers():
    core = BrokerCore(CoreConfig(max_queued_pairs=10))
    core.register(b"w", info(2), 0.0)
    core.admit((b"c", 1), Request(1, OP_SCORE, ["q"], None, ["long " * 40], chunking=Chunking()), 0.0)
    [(_, batch)] = core.dispatch(0.0)
    assert batch.pairs[0].chunking == Chunking()
    windows = {0: [(s, s + 10, 12) for s in range(0, 120, 10)]}  # 12 windows, over the bound of 10
    _, [outcome] = core.on_result(b"w", batch.id, np.zeros(1, np.float32), 0.1, windows=windows)
    assert outcome.error_code == ErrorCode.TOO_LARGE
    assert outcome.error_message.startswith("document 0 needs 12 windows, and 0 pairs are queued at the broker "
                                            "(limit 10)")
    assert core.queued_pairs == 0 and len(core.requests) == 0


def test_a_split_documents_windows_are_queued_priced_by_their_tokens_and_aggregated():
    core = BrokerCore(CoreConfig(batching=BatchingConfig(max_batch=2, bucket_edges=(512,))))
    for w in (b"w1", b"w2"):
        core.register(w, info(2), 0.0)
    doc = "one two three four five six"
    core.admit((b"c", 1), Request(1, OP_RERANK, ["q"], None, ["short", doc], chunking=Chunking("max")), 0.0)
    [(w, batch)] = core.dispatch(0.0)
    spans = [(0, 13, 30), (8, 23, 31), (14, 27, 29)]
    assert core.on_result(w.identity, batch.id, np.array([0.5, np.nan], np.float32), 0.1,
                          windows={1: spans})[1] == []
    sends = core.dispatch(0.1)  # three window pairs, two a batch: on both workers
    assert sorted(len(b.pairs) for _, b in sends) == [1, 2] and len({w.identity for w, _ in sends}) == 2
    assert sorted(p.tokens for _, b in sends for p in b.pairs) == [29, 30, 31]
    assert sorted(p.doc for _, b in sends for p in b.pairs) == sorted(doc[s:e] for s, e, _ in spans)
    outcomes = []
    for worker, b in sends:
        scores = np.array([{0: 0.2, 8: 0.9, 14: 0.4}[p.window[0]] for p in b.pairs], np.float32)
        outcomes += core.on_result(worker.identity, b.id, scores, 0.2)[1]
    [outcome] = outcomes
    assert list(outcome.scores) == pytest.approx([0.5, 0.9]) and outcome.spans.tolist() == [[0, 5], [8, 23]]


def test_a_request_asks_for_at_most_the_brokers_windows_a_document():
    core = BrokerCore(CoreConfig(max_windows_per_doc=4))
    core.register(b"w", info(2), 0.0)
    core.admit((b"c", 1), Request(1, OP_SCORE, ["q"], None, ["d"], chunking=Chunking(max_windows=100)), 0.0)
    core.admit((b"c", 2), Request(2, OP_SCORE, ["q"], None, ["d"], chunking=Chunking(max_windows=2)), 0.0)
    [(_, batch)] = core.dispatch(0.0)
    assert sorted(p.chunking.max_windows for p in batch.pairs) == [2, 4]
