"""Which workers are alive, what each holds in flight, and who gets the next batch.

Pure logic with an injected clock, after the zguide's Paranoid Pirate worker queue,
with one difference: a dead worker's batches are handed back to be requeued, not
dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from rerankpool.broker.batching import Pair
from rerankpool.protocol import WorkerInfo

logger = logging.getLogger(__name__)


@dataclass
class Batch:
    """A batch as sent to a worker."""

    id: int
    pairs: list[Pair]
    model: str = ""  # the model whose workers may run it; a lost batch goes back to that model's queue
    sent_at: float = 0.0
    exclusive: bool = False  # a suspect batch: its worker gets nothing else while it runs
    _queue_ms: np.ndarray | None = field(default=None, repr=False, compare=False)

    def queue_ms(self) -> np.ndarray:
        """Each pair's wait in the broker, from its arrival to the batch's sending (computed once)."""
        if self._queue_ms is None:
            self._queue_ms = np.fromiter((1000.0 * (self.sent_at - p.enqueued_at) for p in self.pairs), np.float64,
                                         len(self.pairs))
        return self._queue_ms


@dataclass
class WorkerState:
    identity: bytes
    info: WorkerInfo
    expires_at: float
    in_flight: dict[int, Batch] = field(default_factory=dict)
    last_assigned: float = 0.0
    batches_done: int = 0
    pairs_done: int = 0
    memory: dict[str, float] = field(default_factory=dict)
    draining: bool = False

    @property
    def name(self) -> str:
        return f"{self.info.host}:{self.info.pid}"

    @property
    def free_credit(self) -> int:
        if self.draining or any(batch.exclusive for batch in self.in_flight.values()):
            return 0
        return self.info.capacity - len(self.in_flight)


@dataclass(frozen=True)
class LivenessConfig:
    heartbeat_interval_s: float = 1.0
    liveness: int = 3  # missed heartbeats before a peer is declared dead

    @property
    def expiry_s(self) -> float:
        return self.heartbeat_interval_s * self.liveness


class WorkerRegistry:
    def __init__(self, liveness: LivenessConfig = LivenessConfig()) -> None:
        self.liveness = liveness
        self._workers: dict[bytes, WorkerState] = {}

    def __len__(self) -> int:
        return len(self._workers)

    def __contains__(self, identity: bytes) -> bool:
        return identity in self._workers

    def __iter__(self):
        return iter(list(self._workers.values()))

    def get(self, identity: bytes) -> WorkerState | None:
        return self._workers.get(identity)

    def serving(self, model: str) -> list[WorkerState]:
        """The live workers of ``model``."""
        return [w for w in self._workers.values() if w.info.model == model]

    def register(self, identity: bytes, info: WorkerInfo, now: float) -> list[Batch]:
        """Add a worker. If the identity was already known (it restarted), return its lost batches."""
        orphaned = self.remove(identity)
        self._workers[identity] = WorkerState(identity, info, now + self.liveness.expiry_s)
        return orphaned

    def touch(self, identity: bytes, now: float) -> bool:
        """Any message from a worker proves it alive. False for an unknown worker."""
        worker = self._workers.get(identity)
        if worker is None:
            return False
        worker.expires_at = now + self.liveness.expiry_s
        return True

    def remove(self, identity: bytes) -> list[Batch]:
        worker = self._workers.pop(identity, None)
        return list(worker.in_flight.values()) if worker else []

    def purge(self, now: float) -> list[tuple[WorkerState, list[Batch]]]:
        """Remove workers whose heartbeats stopped; return them with their in-flight batches."""
        dead = [w for w in self._workers.values() if w.expires_at <= now]
        for worker in dead:
            del self._workers[worker.identity]
        return [(w, list(w.in_flight.values())) for w in dead]

    def pick(self, model: str, idle_only: bool = False) -> WorkerState | None:
        """The least-loaded worker of ``model`` with free credit (least recently used on ties)."""
        best: WorkerState | None = None
        for worker in self._workers.values():
            if worker.info.model != model or worker.free_credit <= 0 or (idle_only and worker.in_flight):
                continue
            if best is None or (len(worker.in_flight), worker.last_assigned) < (
                len(best.in_flight),
                best.last_assigned,
            ):
                best = worker
        return best

    def idle_count(self, model: str) -> int:
        """Workers of ``model`` with nothing in flight that can take a batch."""
        return sum(1 for w in self._workers.values() if w.info.model == model and not w.in_flight and w.free_credit > 0)

    def assign(self, worker: WorkerState, batch: Batch, now: float) -> None:
        if worker.free_credit <= 0:
            raise RuntimeError(f"worker {worker.name} has no free credit")
        batch.sent_at = now
        worker.in_flight[batch.id] = batch
        worker.last_assigned = now

    def complete(self, identity: bytes, batch_id: int) -> Batch | None:
        """Take a finished batch off its worker; None for a batch this worker does not hold.

        A late reply from a worker already declared dead, or a duplicate, gives None and
        is discarded, so no pair is counted twice.
        """
        worker = self._workers.get(identity)
        if worker is None:
            return None
        batch = worker.in_flight.pop(batch_id, None)
        if batch is not None:
            worker.batches_done += 1
            worker.pairs_done += len(batch.pairs)
        return batch

    def in_flight_batches(self) -> int:
        return sum(len(w.in_flight) for w in self._workers.values())
