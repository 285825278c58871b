"""The broker's decisions, without sockets: admit, dispatch, collect, expire, purge.

``BrokerCore`` joins the request table, the worker registry and one ``ModelLane`` per
served model (the zguide Majordomo's named services, with models for services): each lane
has its own batcher and suspect queue, a batch holds pairs of one model only, and only a
worker of that model gets it, so every rule (buckets, token budgets, credits, idle-worker
splitting, requeue, poison isolation) holds per model. A request names its model, or gets
the default one (``CoreConfig.default_model``, else the first model a worker registered with).
A document to chunk goes to a worker as one pair; its windows come back as spans and are
queued as pairs of their own (``RequestTable.split``). Every method takes the time as
an argument and returns what must be sent, so the socket loop in ``server.py`` only moves
frames, and tests can drive the whole broker logic with a fake clock and any order of events.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from rerankpool import protocol as P
from rerankpool.broker.assembly import BatchCost, Outcome, RequestKey, RequestTable
from rerankpool.broker.batching import Batcher, BatchingConfig, Pair
from rerankpool.broker.metrics import PoolMetrics
from rerankpool.broker.registry import Batch, LivenessConfig, WorkerRegistry, WorkerState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoreConfig:
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    liveness: LivenessConfig = field(default_factory=LivenessConfig)
    request_timeout_ms: int | None = 30_000  # used when a request names no timeout
    max_queued_pairs: int = 200_000  # over all models
    max_queued_pairs_per_model: int | None = None  # None: the overall bound with one model, half of it with several
    default_model: str | None = None  # None: the first model a worker registers with
    chunking: P.Chunking | None = None  # chunked scoring of requests that do not ask for it (None: off)
    max_windows_per_doc: int = 16  # the most windows any request's document is split into
    max_length: int = 512
    max_pair_failures: int = 3  # a pair that fails alone this often is poison: its request gets an error


class Counters:
    """Running totals for the stats op; ``metrics`` holds the histograms and per-op outcomes."""

    def __init__(self) -> None:
        self.metrics = PoolMetrics()
        self.requests = 0
        self.replies_ok = 0
        self.replies_error: dict[str, int] = {}
        self.pairs_in = 0
        self.pairs_scored = 0
        self.batches_sent = 0
        self.batches_requeued = 0
        self.workers_lost = 0
        self._recent: deque[tuple[float, int]] = deque()

    def scored(self, now: float, n: int) -> None:
        self.pairs_scored += n
        self._recent.append((now, n))

    def ok(self, op: str, model: str) -> None:
        self.replies_ok += 1
        self.metrics.outcome(op, "ok", model)

    def error(self, code: str, op: str, model: str = "") -> None:
        """An error answer; ``op`` is the request's, or ``invalid`` for one that could not be read; ``model``
        a served model's name, or "" (never a name a client made up: the metrics' labels stay bounded)."""
        self.replies_error[code] = self.replies_error.get(code, 0) + 1
        self.metrics.outcome(op, code, model)

    def pairs_per_s(self, now: float, window_s: float = 2.0) -> float:
        while self._recent and self._recent[0][0] < now - window_s:
            self._recent.popleft()
        return sum(n for _, n in self._recent) / window_s


@dataclass
class ModelLane:
    """One served model's queue: its batcher and its suspect pairs (each group run alone on an idle worker).

    Its workers are the registry's workers whose ``info.model`` names it. A lane lives as long as the
    broker: a model whose workers are all gone is still known, and its requests wait for a worker.
    """

    name: str
    batcher: Batcher
    quarantine: deque[list[Pair]] = field(default_factory=deque)
    label: str = ""
    pairs_scored: int = 0

    @property
    def queued_pairs(self) -> int:
        return len(self.batcher) + sum(len(group) for group in self.quarantine)


PENDING = ""  # the lane of requests that name no model before any worker has registered


class BrokerCore:
    def __init__(self, config: CoreConfig = CoreConfig()) -> None:
        self.config = config
        self.requests = RequestTable(max_length=config.max_length)
        self.workers = WorkerRegistry(config.liveness)
        self.counters = Counters()
        self.lanes: dict[str, ModelLane] = {}
        self.default_model: str | None = config.default_model  # else the first model a worker registers with
        if self.default_model:  # known from the start: its requests wait for its workers
            self._lane(self.default_model)
        self._turn = 0  # which lane dispatches first, rotating: no model waits behind another
        # Ids start at random: a worker that reconnects to a restarted broker may still send
        # results of the old one's batches, and those must not pass for this one's.
        self._next_batch_id = secrets.randbits(48)

    # -- requests ---------------------------------------------------------------------

    @property
    def queued_pairs(self) -> int:
        return sum(lane.queued_pairs for lane in self.lanes.values())

    @property
    def models(self) -> list[str]:
        """The models served (a worker registered with each, or the configured default), the default first."""
        return [name for name in self.lanes if name != PENDING]

    def _lane(self, model: str, label: str = "") -> ModelLane:
        lane = self.lanes.get(model)
        if lane is None:
            lane = self.lanes[model] = ModelLane(model, Batcher(self.config.batching, is_live=self.requests.is_live))
        lane.label = label or lane.label
        return lane

    def per_model_bound(self) -> int:
        """Pairs one model may have queued: a flood for one model leaves room for the others."""
        if self.config.max_queued_pairs_per_model is not None:
            return self.config.max_queued_pairs_per_model
        several = len(self.models) > 1
        return self.config.max_queued_pairs // 2 if several else self.config.max_queued_pairs

    def admit(self, key: RequestKey, req: P.Request, now: float) -> tuple[str, str] | None:
        """Queue a scoring request's pairs in its model's lane; returns (code, message) if it is refused."""
        self.counters.requests += 1
        if key in self.requests:
            return self._refuse(
                req.op, P.ErrorCode.DUPLICATE_ID, f"request id {req.id} is already in flight on this connection"
            )
        model = req.model or self.default_model or PENDING
        lane = self.lanes.get(model)
        if lane is None and model != PENDING:
            served = ", ".join(repr(m) for m in self.models) or "none yet (no worker has registered)"
            return self._refuse(req.op, P.ErrorCode.UNKNOWN_MODEL,
                                f"model {model!r} is not served by this pool; served: {served}")
        if self.queued_pairs + req.n_pairs > self.config.max_queued_pairs:
            return self._refuse(
                req.op, P.ErrorCode.OVERLOADED,
                f"{self.queued_pairs} pairs queued (limit {self.config.max_queued_pairs}); back off and retry", model,
            )
        lane = lane or self._lane(PENDING)
        bound = self.per_model_bound()
        if lane.queued_pairs + req.n_pairs > bound:
            return self._refuse(
                req.op, P.ErrorCode.OVERLOADED,
                f"{lane.queued_pairs} pairs queued for model {model!r} (limit {bound} a model); back off and retry",
                model,
            )
        req.model = model if model != PENDING else None
        chunking = req.chunking or self.config.chunking
        if chunking is not None and chunking.max_windows > self.config.max_windows_per_doc:
            chunking = dataclasses.replace(chunking, max_windows=self.config.max_windows_per_doc)
        pairs = self.requests.add(key, req, now, self.config.request_timeout_ms, chunking)
        self.counters.pairs_in += len(pairs)
        lane.batcher.add(pairs, now)
        return None

    def _refuse(self, op: str, code: str, message: str, model: str = "") -> tuple[str, str]:
        self.counters.error(code, op, model if model in self.lanes else "")
        return code, message

    def model_of(self, req: P.Request) -> str:
        """The model a request was admitted for ("" while nothing is served)."""
        return req.model or self.default_model or PENDING

    def expire(self, now: float) -> list[Outcome]:
        outcomes = self.requests.expire(now)
        for outcome in outcomes:
            model = self.model_of(outcome.request)
            if not self.workers.serving(model):
                outcome.error_code = P.ErrorCode.NO_WORKERS
                outcome.error_message = (
                    f"no worker serves model {model!r} now: start one with `rerankpool worker --model {model}`"
                    if model else "no worker is connected: start workers with `rerankpool worker`")
        return self._counted(outcomes)

    def fail_all(self, code: str, message: str) -> list[Outcome]:
        outcomes = [self.requests.fail(key, code, message) for key in self.requests.keys()]
        return self._counted([o for o in outcomes if o is not None])

    def _counted(self, outcomes: list[Outcome]) -> list[Outcome]:
        for outcome in outcomes:
            model = self.model_of(outcome.request)
            if outcome.ok:
                self.counters.ok(outcome.request.op, model)
            else:
                self.counters.error(outcome.error_code or "", outcome.request.op, model)
        return outcomes

    # -- workers ----------------------------------------------------------------------

    def register(self, identity: bytes, info: P.WorkerInfo, now: float) -> str | None:
        """Add a worker to its model's lane (a new model gets one; the first becomes the default);
        returns the reason if it is refused."""
        if not info.model:
            return "the worker names no model"
        if self.default_model is None:
            self.default_model = info.model
            pending = self.lanes.pop(PENDING, None)
            if pending is not None:  # requests that named no model before any worker came
                pending.name = info.model
                self.lanes = {info.model: pending, **self.lanes}
        self._lane(info.model, info.label)
        self._requeue(self.workers.register(identity, info, now))
        self._price_batches()
        return None

    def remove_worker(self, identity: bytes) -> None:
        self._requeue(self.workers.remove(identity))
        self._price_batches()

    def _price_batches(self) -> None:
        """A model's batches are priced for packing workers only while every live worker of it packs."""
        for lane in self.lanes.values():
            workers = self.workers.serving(lane.name)
            lane.batcher.set_packed(bool(workers) and all(w.info.packed for w in workers))

    def purge(self, now: float) -> tuple[list[WorkerState], list[Outcome]]:
        """Declare silent workers dead and retry what they held, blaming only what is certain.

        A worker that held one batch died running it: that batch is retried in halves (see
        ``batch_failed``). A worker that held several may have died on any of them (even the
        oldest may have finished, its result lost with the process), so each is retried
        unblamed and alone on a worker: if it kills that worker too, the blame is certain.
        """
        dead, outcomes = [], []
        for worker, batches in self.workers.purge(now):
            self.counters.workers_lost += 1
            logger.warning(
                "worker %s missed its heartbeats: declared dead, %d batch(es) to retry", worker.name, len(batches)
            )
            if len(batches) == 1:
                outcomes += self.batch_failed(batches[0], f"the worker ({worker.name}) died while running it")
            else:
                for batch in sorted(batches, key=lambda b: b.id):
                    self.counters.batches_requeued += 1
                    self.lanes[batch.model].quarantine.append(batch.pairs)
            dead.append(worker)
        if dead:
            self._price_batches()
        return dead, outcomes

    def batch_failed(self, batch: Batch, reason: str) -> list[Outcome]:
        """Retry a failed batch so that one bad pair cannot sink its neighbours.

        The batch is split in halves, each retried on its own, until a pair that keeps
        failing stands alone; after ``max_pair_failures`` failures that pair's request
        gets an error naming the document, and every other pair is still scored.
        """
        self.counters.batches_requeued += 1
        pairs = [p for p in batch.pairs if self.requests.is_live(p.key)]
        for pair in pairs:
            pair.failures += 1
        quarantine = self.lanes[batch.model].quarantine
        if len(pairs) > 1:
            half = len(pairs) // 2
            quarantine.extend([pairs[:half], pairs[half:]])
            return []
        if not pairs:
            return []
        pair = pairs[0]
        if pair.failures < self.config.max_pair_failures:
            quarantine.append(pairs)
            return []
        logger.error("isolated a poison pair: doc %d of request %s (%s)", pair.index, pair.key, reason)
        self.counters.metrics.poison_pairs += 1
        outcome = self.requests.fail(
            pair.key,  # type: ignore[arg-type]
            P.ErrorCode.WORKER_ERROR,
            f"document {pair.index} made the model fail {pair.failures} times ({reason}); "
            "the request was refused so the pool stays up: check or drop that document",
        )
        return self._counted([outcome] if outcome is not None else [])

    def _requeue(self, batches: list[Batch]) -> None:
        for batch in batches:
            self.counters.batches_requeued += 1
            self.lanes[batch.model].batcher.requeue(batch.pairs)

    def on_result(
        self, identity: bytes, batch_id: int, scores: np.ndarray, now: float,
        timings: P.BatchTimings | None = None, tokens: np.ndarray | None = None,
        refused: dict[int, str] | None = None, windows: dict[int, list[tuple[int, int, int]]] | None = None,
    ) -> tuple[Batch | None, list[Outcome]]:
        """Take a batch's scores; returns the batch (None if discarded) and the requests it completes.

        ``timings`` and ``tokens`` (per pair) feed the metrics and the requests' usage; a
        worker that sends no token counts is charged the broker's estimates. ``refused``: the
        pairs (by index in the batch) that the worker would not cut for a request that forbade
        it; their requests get ``too_large``, and every other pair's score is kept. ``windows``:
        the documents the worker split (by index in the batch), whose windows are queued as pairs
        of their own (``RequestTable.split``) instead of taking a score.
        """
        batch = self.workers.complete(identity, batch_id)
        if batch is None:
            logger.debug("discarded a late or duplicate result for batch %s", batch_id)
            return None, []
        n = len(batch.pairs)
        if len(scores) != n:
            logger.error("worker returned %d scores for %d pairs; batch requeued", len(scores), n)
            self._requeue([batch])
            return None, []
        failed = []
        for i, reason in sorted((refused or {}).items()):
            if 0 <= i < n:
                pair = batch.pairs[i]
                failed.append(self.requests.fail(
                    pair.key, P.ErrorCode.TOO_LARGE,  # type: ignore[arg-type]
                    f"document {pair.index} is too long: {reason}; send truncate=true (or a max_tokens_per_doc) "
                    "to have it cut, or shorten it"))
        split = set()
        for i, spans in sorted((windows or {}).items()):
            if 0 <= i < n:
                split.add(i)
                failed += self._queue_windows(batch.pairs[i], spans, batch.model, now)
        if split:
            keep = np.array([i not in split for i in range(n)])
            pairs = [p for i, p in enumerate(batch.pairs) if keep[i]]
            scores, tokens = scores[keep], None if tokens is None else tokens[keep]
        else:
            pairs = batch.pairs
        n = len(pairs)
        self.counters.scored(now, n)
        self.lanes[batch.model].pairs_scored += n
        cost = None
        if timings is not None:
            if tokens is None or len(tokens) != n:
                tokens = np.fromiter((p.tokens for p in pairs), np.int64, n)
            queue_ms = batch.queue_ms() if not split else batch.queue_ms()[keep]
            cost = BatchCost(tokens, queue_ms, timings.tokenize_ms, timings.inference_ms)
            self.counters.metrics.batch_done(n, timings.real_tokens, timings.padded_tokens,
                                             float(cost.queue_ms.mean()) / 1000.0, timings.tokenize_ms / 1000.0,
                                             timings.inference_ms / 1000.0)
        return batch, self._counted([o for o in failed if o is not None] + self.requests.fill(pairs, scores, cost))

    def _queue_windows(self, pair: Pair, spans: list[tuple[int, int, int]], model: str,
                       now: float) -> list[Outcome | None]:
        """Queue a split document's windows as pairs; its request gets ``too_large`` if they would pass a queue
        bound."""
        lane = self.lanes[model]
        over = [(what, queued, bound) for what, queued, bound in (
            ("the broker", self.queued_pairs, self.config.max_queued_pairs),
            (f"model {model!r}", lane.queued_pairs, self.per_model_bound())) if queued + len(spans) > bound]
        if over:
            what, queued, bound = over[0]
            return [self.requests.fail(
                pair.key, P.ErrorCode.TOO_LARGE,  # type: ignore[arg-type]
                f"document {pair.index} needs {len(spans)} windows, and {queued} pairs are queued at {what} "
                f"(limit {bound}): send fewer or shorter documents, or a smaller max_windows")]
        lane.batcher.add(self.requests.split(pair, spans), now)
        return []

    def on_failed(self, identity: bytes, batch_id: int, message: str) -> list[Outcome]:
        """A batch the model raised on: retried in halves to isolate the pair that does it."""
        batch = self.workers.complete(identity, batch_id)
        if batch is None:
            return []
        logger.warning("batch %d (%d pairs) failed: %s", batch.id, len(batch.pairs), message)
        return self.batch_failed(batch, message)

    def cancel(self, key: RequestKey) -> bool:
        """The client gave up: drop the request; its queued pairs are skipped before batching."""
        return self.requests.fail(key, P.ErrorCode.TIMEOUT, "cancelled by the client") is not None

    # -- dispatch ---------------------------------------------------------------------

    def dispatch(self, now: float) -> list[tuple[WorkerState, Batch]]:
        """Batches to send now, each to a worker of its model (rule in ``batching``'s docstring).

        The lanes take turns going first; a lane only ever uses its own model's workers, so a
        flood for one model cannot hold back another's batches.
        """
        names = list(self.lanes)
        if not names:
            return []
        self._turn = (self._turn + 1) % len(names)
        sends: list[tuple[WorkerState, Batch]] = []
        for name in names[self._turn:] + names[: self._turn]:
            sends += self._dispatch_lane(self.lanes[name], now)
        return sends

    def _dispatch_lane(self, lane: ModelLane, now: float) -> list[tuple[WorkerState, Batch]]:
        sends = []
        model, batcher = lane.name, lane.batcher
        while lane.quarantine:  # suspects run alone on an idle worker, before anything else
            worker = self.workers.pick(model, idle_only=True)
            if worker is None:
                return sends
            pairs = [p for p in lane.quarantine.popleft() if self.requests.is_live(p.key)]
            if pairs:
                sends.append((worker, self._assign(worker, pairs, now, model, exclusive=True)))
        while len(batcher):
            worker = self.workers.pick(model)
            if worker is None:
                break
            pairs = batcher.pop_due(now)
            if pairs is None:
                worker = self.workers.pick(model, idle_only=True)
                pairs = batcher.pop_any(now, self._share(lane)) if worker is not None else None
                if pairs is None:
                    break
            sends.append((worker, self._assign(worker, pairs, now, model)))  # type: ignore[arg-type]
        return sends

    def next_batch_deadline(self) -> float | None:
        """When a queued batch falls due, among the models with a worker free to take it."""
        due = [lane.batcher.next_deadline() for lane in self.lanes.values() if self.workers.pick(lane.name)]
        return min((d for d in due if d is not None), default=None)

    def _share(self, lane: ModelLane) -> int | None:
        """An idle worker's share of a small queue when several workers of its model are idle (None: all of it)."""
        split_min = self.config.batching.split_min
        idle = self.workers.idle_count(lane.name)
        if not split_min or idle < 2:
            return None
        return max(split_min, -(-len(lane.batcher) // idle))

    def _assign(self, worker: WorkerState, pairs: list[Pair], now: float, model: str,
                exclusive: bool = False) -> Batch:
        batch = Batch(self._next_batch_id, pairs, model=model, exclusive=exclusive)
        self._next_batch_id += 1
        self.workers.assign(worker, batch, now)
        self.counters.batches_sent += 1
        return batch
