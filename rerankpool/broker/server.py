"""The broker's socket loop: a ROUTER for clients (frontend), a ROUTER for workers (backend).

The loop reads top to bottom, as in the zguide's Majordomo broker: poll until the
next deadline, route what arrived, then expire requests, purge dead workers,
dispatch batches and send heartbeats. All decisions are made by the plain classes
in ``batching``, ``assembly`` and ``registry``; this module only moves frames.
"""

from __future__ import annotations

import dataclasses
import logging
import socket as pysocket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from rerankpool import protocol as P
from rerankpool._version import __version__
from rerankpool.broker.assembly import Outcome, finalize
from rerankpool.broker.core import CoreConfig, BrokerCore
from rerankpool.broker.history import History
from rerankpool.broker.registry import Batch, WorkerState
from rerankpool.security.endpoints import warn_if_public_without_curve
from rerankpool.security.server import ServerSecurity
from rerankpool.sockets import received

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerConfig:
    frontend: str = "tcp://127.0.0.1:5555"
    backend: str = "tcp://127.0.0.1:5556"
    core: CoreConfig = field(default_factory=CoreConfig)
    limits: P.Limits = field(default_factory=P.Limits)
    events_kept: int = 20_000  # per-batch events held for the stats op
    expect_workers: int = 0  # log one "ready" line once this many workers have registered
    security: ServerSecurity | None = None  # CURVE on both sockets; None = plain TCP


def batch_message(batch: Batch) -> P.BatchMessage:
    """A batch on the wire: each distinct query once, and per doc the index of its query."""
    query_ids: dict[str, int] = {}
    pairs = batch.pairs
    index = np.fromiter((query_ids.setdefault(p.query, len(query_ids)) for p in pairs), np.int32, len(pairs))
    truncations = [p.truncation for p in pairs] if any(not p.truncation.is_default for p in pairs) else None
    split = {i: p.chunking for i, p in enumerate(pairs) if p.chunking is not None}
    return P.BatchMessage(batch.id, list(query_ids), index, [p.doc for p in pairs], truncations, split or None)


class Broker:
    def __init__(self, config: BrokerConfig, context: zmq.Context | None = None) -> None:
        self.config = config
        self.ctx = context or zmq.Context.instance()
        self.core = BrokerCore(config.core)
        self.events: deque[dict[str, Any]] = deque(maxlen=config.events_kept)
        self._event_seq = 0
        self.history = History()
        self._rolled_at = time.monotonic()  # the history closes a row every second
        self._next_heartbeat = 0.0
        self._draining = False
        self._stopped = False
        self._announced = False
        self._parked_pings: list[tuple[bytes, int, int, float]] = []  # identity, id, workers wanted, deadline
        self.started_at = time.monotonic()
        self._auth = config.security.start(self.ctx) if config.security else None
        self.frontend = self._socket(config.frontend, "frontend")
        self.backend = self._socket(config.backend, "backend")
        self.frontend.setsockopt(zmq.MAXMSGSIZE, 4 * config.limits.max_message_bytes)
        self.frontend_endpoint = self.frontend.getsockopt_string(zmq.LAST_ENDPOINT)
        self.backend_endpoint = self.backend.getsockopt_string(zmq.LAST_ENDPOINT)
        self.poller = zmq.Poller()
        self.poller.register(self.frontend, zmq.POLLIN)
        self.poller.register(self.backend, zmq.POLLIN)

    def _socket(self, endpoint: str, role: str) -> zmq.Socket:
        sock = self.ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a vanished peer raises instead of dropping silently
        if self.config.security is not None:
            self.config.security.apply(sock, role=role)
        warn_if_public_without_curve(endpoint, secured=self.config.security is not None)
        sock.bind(endpoint)
        return sock

    # -- lifecycle ------------------------------------------------------------------

    def drain(self) -> None:
        """Stop taking new work; exit once every request in flight is answered."""
        if not self._draining:
            logger.info("draining: %d requests in flight", len(self.core.requests))
        self._draining = True

    def stop(self) -> None:
        self._stopped = True

    def close(self) -> None:
        self.frontend.close(0)
        self.backend.close(0)
        if self._auth is not None:
            self._auth.stop()

    def run(self) -> None:
        """Serve until ``stop()`` or, after ``drain()``, until nothing is in flight."""
        try:
            while not self._stopped and not (self._draining and len(self.core.requests) == 0):
                self.tick()
                if self._draining and len(self.core.workers) == 0:
                    self._fail_all(P.ErrorCode.SHUTTING_DOWN, "the broker shut down with no worker left to finish this")
        finally:
            self.close()  # workers notice the silence and reconnect, with backoff, to the next broker

    def tick(self) -> None:
        """One pass of the loop: poll, route, expire, purge, dispatch, heartbeat."""
        events = dict(self.poller.poll(self._poll_timeout_ms()))
        if self.frontend in events:
            for frames in received(self.frontend):
                self._on_client(frames[0], frames[1:])
        if self.backend in events:
            for frames in received(self.backend):
                self._on_worker(frames[0], frames[1:])
        now = time.monotonic()
        _, lost = self.core.purge(now)
        for outcome in self.core.expire(now) + lost:
            self._reply(outcome)
        self._answer_pings(now)
        for worker, batch in self.core.dispatch(now):
            self._send_batch(worker, batch)
        if now >= self._next_heartbeat:
            for worker in self.core.workers:
                self._send_worker(worker.identity, P.encode_heartbeat())
            self._next_heartbeat = now + self.config.core.liveness.heartbeat_interval_s
        if now - self._rolled_at >= 1.0:
            self._roll(now)

    def _roll(self, now: float) -> None:
        """Close the history's second: the queue, and the live workers and models as they stand."""
        core, expiry = self.core, self.config.core.liveness.expiry_s
        interval = self.config.core.liveness.heartbeat_interval_s
        workers = []
        for w in core.workers:
            age = max(0.0, now - (w.expires_at - expiry))
            workers.append({"name": w.name, "model": w.info.model, "in_flight": len(w.in_flight),
                            "heartbeat_age_s": age, "silent": age > 1.5 * interval + 0.5})
        models = [{"name": m.name, "workers": m.workers, "queued_pairs": m.queued_pairs} for m in self.models()]
        self.history.roll(time.time(), now - self._rolled_at, core.queued_pairs, len(core.requests), workers, models)
        self._rolled_at = now

    def _answer_pings(self, now: float) -> None:
        parked = []
        for identity, rid, wanted, deadline in self._parked_pings:
            if len(self.core.workers) >= wanted or now >= deadline:
                self._send_client(identity, P.encode_value_reply(rid, "pong", self._pong()))
            else:
                parked.append((identity, rid, wanted, deadline))
        self._parked_pings = parked

    def _fail_all(self, code: str, message: str) -> None:
        for outcome in self.core.fail_all(code, message):
            self._reply(outcome)

    def _poll_timeout_ms(self) -> int:
        now = time.monotonic()
        deadlines = [self._next_heartbeat, self._rolled_at + 1.0, now + 0.25, *(p[3] for p in self._parked_pings)]
        # A batch timeout matters only if a worker could take the batch; otherwise the next
        # result (a socket event) wakes the loop, and polling at 0 ms would spin.
        due = [self.core.requests.next_deadline(), self.core.next_batch_deadline()]
        deadlines += [d for d in due if d is not None]
        return max(0, int((min(deadlines) - now) * 1000 + 0.999))

    # -- clients ----------------------------------------------------------------------

    def _on_client(self, identity: bytes, frames: list[bytes]) -> None:
        try:
            req = P.decode_request(frames, self.config.limits)
        except P.ProtocolError as exc:
            logger.info("refused request from client %s: %s: %s", identity.hex(), exc.code, exc.message)
            self.core.counters.error(exc.code, exc.op or "invalid")
            self.history.error(exc.code, exc.message)
            self._send_client(identity, P.encode_error_reply(exc.request_id, exc.code, exc.message))
            return
        if req.op == P.OP_PING:
            if req.wait_workers and len(self.core.workers) < req.wait_workers and len(self._parked_pings) < 1000:
                deadline = time.monotonic() + min(req.timeout_ms or 1000, 60_000) / 1000.0
                self._parked_pings.append((identity, req.id, req.wait_workers, deadline))
            else:
                self._send_client(identity, P.encode_value_reply(req.id, "pong", self._pong()))
        elif req.op == P.OP_CANCEL:
            self.core.cancel((identity, req.id))
        elif req.op == P.OP_STATS:
            self._send_client(identity, P.encode_value_reply(req.id, "stats", self.stats(req.events_since,
                                                                                      req.history)))
        elif req.op == P.OP_MODELS:
            models = [dataclasses.asdict(m) for m in self.models()]
            self._send_client(identity, P.encode_value_reply(req.id, "models", models))
        else:
            self._admit(identity, req)

    def _admit(self, identity: bytes, req: P.Request) -> None:
        if self._draining:
            self.core.counters.error(P.ErrorCode.SHUTTING_DOWN, req.op)
            error: tuple[str, str] | None = (
                P.ErrorCode.SHUTTING_DOWN, "the broker is shutting down; retry against another broker"
            )
        else:
            error = self.core.admit((identity, req.id), req, time.monotonic())
        if error is not None:
            self.history.error(*error)
            self._send_client(identity, P.encode_error_reply(req.id, *error))

    def _reply(self, outcome: Outcome) -> None:
        identity, request_id = outcome.key
        latency_s = time.monotonic() - outcome.received_at
        self.core.counters.metrics.request_done(latency_s)
        if outcome.ok:
            self.history.request_done(1000.0 * latency_s)
        else:
            self.history.error(outcome.error_code or "", outcome.error_message or "")
        if outcome.ok:
            scores, indices = finalize(outcome.request, outcome.scores)  # type: ignore[arg-type]
            spans = outcome.spans if outcome.spans is None or indices is None else outcome.spans[indices]
            self._send_client(identity, P.encode_scores_reply(request_id, scores, indices, outcome.usage, spans))
        else:
            self._send_client(
                identity, P.encode_error_reply(request_id, outcome.error_code or "", outcome.error_message or "")
            )

    def _send_client(self, identity: bytes, frames: list[bytes]) -> None:
        try:
            self.frontend.send_multipart([identity, *frames], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # client gone (EHOSTUNREACH) or its queue is full
            logger.info("could not reply to client %s: %s", identity.hex(), exc)

    # -- workers ----------------------------------------------------------------------

    def _on_worker(self, identity: bytes, frames: list[bytes]) -> None:
        try:
            header = P.unpack(frames)
        except P.ProtocolError as exc:
            logger.warning("dropped a malformed message from worker %s: %s", identity.hex(), exc.message)
            return
        op = header.get("op")
        now = time.monotonic()
        workers = self.core.workers
        if op == P.W_READY:
            self._on_ready(identity, header, now)
            return
        if not workers.touch(identity, now):
            if op != P.W_BYE:
                self._send_worker(identity, P.encode_disconnect())
            return
        try:
            if op == P.W_RESULT:
                self._on_result(identity, header, now)
            elif op == P.W_FAILED:
                self.history.batch_failed(workers.get(identity).name)  # type: ignore[union-attr]
                for outcome in self.core.on_failed(identity, header["id"], str(header.get("error", "unknown error"))):
                    self._reply(outcome)
            elif op == P.W_DRAINING:
                workers.get(identity).draining = True  # type: ignore[union-attr]
            elif op == P.W_BYE:
                logger.info("worker %s said goodbye", workers.get(identity).name)  # type: ignore[union-attr]
                self.core.remove_worker(identity)
            elif op == P.W_HEARTBEAT:
                if isinstance(header.get("sample"), dict):
                    self.history.host_sample(str(header.get("host") or "?"), header["sample"], time.time())
            else:
                logger.warning("unknown op %r from worker %s", op, identity.hex())
        except (KeyError, TypeError, ValueError, P.ProtocolError) as exc:
            logger.warning("bad %r message from worker %s: %s", op, identity.hex(), exc)

    def _on_ready(self, identity: bytes, header: dict[str, Any], now: float) -> None:
        try:
            info = P.WorkerInfo.from_dict(header.get("info"))
        except P.ProtocolError as exc:
            self._send_worker(identity, P.encode_refused(exc.message))
            return
        reason = self.core.register(identity, info, now)
        if reason is not None:
            logger.error("refused worker %s:%s: %s", info.host, info.pid, reason)
            self._send_worker(identity, P.encode_refused(reason))
            return
        n = len(self.core.workers)
        logger.info(
            "worker %s:%s ready: %s, %s on %s (%s), capacity %d; %d worker(s) live",
            info.host, info.pid, info.label, info.engine, info.device, info.dtype, info.capacity, n,
        )
        if not self._announced and self.config.expect_workers and n >= self.config.expect_workers:
            self._announced = True
            logger.info("rerankpool ready: %d worker(s) serving %s at %s", n,
                        ", ".join(self.core.models), self.frontend_endpoint)

    def _on_result(self, identity: bytes, header: dict[str, Any], now: float) -> None:
        timings = P.BatchTimings.from_dict(header["timings"])
        tokens = P.from_i32(header["tokens"]) if isinstance(header.get("tokens"), bytes) else None
        refused = {int(i): str(reason) for i, reason in header.get("refused") or []}
        windows = {int(i): [(int(s), int(e), int(t)) for s, e, t in spans] for i, spans in header.get("windows") or []}
        batch, outcomes = self.core.on_result(identity, header["id"], P.from_f32(header["scores"]), now, timings,
                                              tokens, refused, windows)
        if batch is None:
            return
        worker = self.core.workers.get(identity)
        if worker is not None and isinstance(header.get("memory"), dict):
            worker.memory = header["memory"]
        self._record_event(worker, batch, timings, now)
        for outcome in outcomes:
            self._reply(outcome)

    def _send_batch(self, worker: WorkerState, batch: Batch) -> None:
        if not self._send_worker(worker.identity, P.encode_batch(batch_message(batch))):
            self.core.remove_worker(worker.identity)  # unreachable: everything it held is requeued

    def _send_worker(self, identity: bytes, frames: list[bytes]) -> bool:
        try:
            self.backend.send_multipart([identity, *frames], zmq.NOBLOCK)
            return True
        except zmq.ZMQError as exc:
            logger.warning("could not send to worker %s: %s", identity.hex(), exc)
            return False

    # -- stats ------------------------------------------------------------------------

    def _record_event(self, worker: WorkerState | None, batch: Batch, t: P.BatchTimings, now: float) -> None:
        self._event_seq += 1
        event = P.BatchEvent(**dataclasses.asdict(t), seq=self._event_seq, t=time.time(),
                             worker=worker.name if worker else "?", model=batch.model,
                             queue_wait_ms=float(batch.queue_ms().mean()),
                             round_trip_ms=1000.0 * (now - batch.sent_at))
        self.events.append(dataclasses.asdict(event))
        self.history.batch_done(event.worker, batch.model, len(batch.pairs), event.queue_wait_ms, t.tokenize_ms,
                                t.inference_ms, event.round_trip_ms or 0.0, t.real_tokens, t.padded_tokens)

    def _pong(self) -> dict[str, Any]:
        return {"workers": len(self.core.workers), "model": self.core.default_model, "models": self.core.models,
                "draining": self._draining}

    def models(self) -> list[P.ModelInfo]:
        """The models served, the default first, with their live workers and queues."""
        core = self.core
        infos = []
        for name in core.models:
            workers = core.workers.serving(name)
            engines = sorted({f"{w.info.engine} on {w.info.device} ({w.info.dtype})" for w in workers})
            infos.append(P.ModelInfo(name, name == core.default_model, len(workers), core.lanes[name].queued_pairs,
                                     core.lanes[name].label, engines))
        return infos

    def stats(self, events_since: int | None = None, history: bool = False) -> dict[str, Any]:
        now = time.monotonic()
        core = self.core
        c = core.counters
        stats: dict[str, Any] = {
            "host": pysocket.gethostname(),
            "uptime_s": now - self.started_at,
            "requests": c.requests,
            "requests_in_flight": len(core.requests),
            "replies_ok": c.replies_ok,
            "replies_error": dict(c.replies_error),
            "pairs_in": c.pairs_in,
            "pairs_scored": c.pairs_scored,
            "pairs_per_s": c.pairs_per_s(now),
            "queue_pairs": core.queued_pairs,
            "default_model": core.default_model,
            "models": [
                {**dataclasses.asdict(info), "pairs_scored": core.lanes[info.name].pairs_scored,
                 "queue_buckets": {str(k): v for k, v in core.lanes[info.name].batcher.depths().items()}}
                for info in self.models()
            ],
            "batches_sent": c.batches_sent,
            "batches_in_flight": core.workers.in_flight_batches(),
            "batches_requeued": c.batches_requeued,
            "workers_lost": c.workers_lost,
            "last_event": self._event_seq,
            "version": __version__,
            "limits": dataclasses.asdict(self.config.limits),
            "metrics": c.metrics.as_dict(),
            "workers": [
                {
                    "name": w.name,
                    "in_flight": len(w.in_flight),
                    "batches_done": w.batches_done,
                    "pairs_done": w.pairs_done,
                    "memory": w.memory,
                    **w.info.__dict__,
                }
                for w in core.workers
            ],
        }
        if events_since is not None:
            stats["events"] = [e for e in self.events if e["seq"] > events_since]
        if history:  # what a dashboard asks for: scrapes and the bench's sampler do not pay for it
            stats["recent"] = self.history.recent(time.time())
            stats["history"] = self.history.as_dict()
        return stats
