"""The worker process: load a model, register with the broker, serve batches.

A DEALER socket talks to the broker's backend ROUTER. Heartbeats run both ways;
when the broker goes silent the worker reconnects with exponential backoff and
registers again (Paranoid Pirate). On SIGTERM it stops taking batches, finishes
those it holds, says goodbye and exits. What it is told to run is a ``WorkerConfig``
(``rerankpool.worker.config``); its stages (``rerankpool.worker.stages``) tokenize and run
the batches it takes.
"""

from __future__ import annotations

import logging
import os
import signal
import socket as pysocket
import sys
import threading
import time

import zmq

from rerankpool import protocol as P
from rerankpool.heap import freeze_startup_heap
from rerankpool.sockets import received
from rerankpool.worker.config import WorkerConfig
from rerankpool.worker.device.client import DeviceClient
from rerankpool.worker.device.stages import DeviceStages
from rerankpool.worker.engines import Engine, load_engine
from rerankpool.worker.engines.base import EngineGone
from rerankpool.worker.pipeline import Pipeline
from rerankpool.worker.policy import warmup_shapes
from rerankpool.worker.stages import Stages
from rerankpool.worker.host import HostSampler
from rerankpool.worker.tokenize import load_pair_tokenizer

logger = logging.getLogger(__name__)


class WorkerRefused(RuntimeError):
    """The broker will not take this worker (for instance, a different model)."""


class Worker:
    def __init__(self, config: WorkerConfig, ctx: zmq.Context | None = None) -> None:
        from rerankpool.models import resolve_model

        if config.capacity < 2:
            raise ValueError("capacity must be >= 2 so tokenizing overlaps inference")
        self.config = config
        self.ctx = ctx or zmq.Context.instance()
        self.model = resolve_model(config.model)
        if config.device_endpoint:  # the device process loads the model, warms it up and runs it
            self.engine: Engine | DeviceClient = DeviceClient(config.device_endpoint, self.ctx)
        else:
            self.engine = load_engine(config.engine_config(self.model))
        self.policy = config.policy(packed=self.engine.packed)
        self.tokenizer = load_pair_tokenizer(  # prompt mode for an LLM reranker
            self.model.path, config.max_length, fast=config.fast_tokenizer, threads=config.threads,
            instruction=config.instruction, truncate=config.truncate,
        )
        logger.info("%s: tokenizing with %s", config.name, self.tokenizer.backend)
        self.host = HostSampler(config.device)
        if config.warmup and not isinstance(self.engine, DeviceClient):  # a device process warms up itself
            start = time.perf_counter()
            self.engine.warmup(warmup_shapes(self.policy, config.max_length))
            logger.debug("warm-up took %.0f ms", 1000 * (time.perf_counter() - start))
        freeze_startup_heap()  # the model, tokenizer and libraries are loaded for good
        self._stop = threading.Event()

    def info(self, capacity: int | None = None) -> P.WorkerInfo:
        return P.WorkerInfo(
            model=self.model.name,
            label=self.model.label,
            engine=self.engine.name,
            device=self.engine.device,
            dtype=self.engine.dtype,
            capacity=capacity or self.config.capacity,
            pid=os.getpid(),
            host=pysocket.gethostname(),
            max_length=self.config.max_length,
            packed=self.engine.packed,
        )

    def request_stop(self) -> None:
        """Finish the batches held, say goodbye, exit (safe from a signal handler)."""
        self._stop.set()

    def _connect(self, link: "BrokerLink") -> None:
        dealer = self.ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        if self.config.security is not None:
            self.config.security.apply(dealer)
        dealer.connect(link.address)
        dealer.send_multipart(P.encode_ready(self.info(link.capacity)))
        link.dealer = dealer

    def run(self) -> None:
        """Serve until stopped.

        With a device process, the socket thread tokenizes and hands chunks on
        (``DeviceStages``). Otherwise sockets run on an I/O thread, and the forward pass on
        this (the model's) thread, fed by a tokenizer thread (``Pipeline``).
        """
        if isinstance(self.engine, DeviceClient):
            self._serve(DeviceStages(self.tokenizer, self.engine, self.policy))
            return
        pipeline = Pipeline(self.ctx, self.tokenizer, self.engine, self.policy)
        failure: list[BaseException] = []

        def io() -> None:
            try:
                self._serve(pipeline)
            except BaseException as exc:  # handed to the main thread, which re-raises it
                failure.append(exc)
            finally:
                pipeline.stop()

        pipeline.start()
        io_thread = threading.Thread(target=io, name="io", daemon=True)
        io_thread.start()
        pipeline.run_forward()
        io_thread.join()
        pipeline.close()
        if failure:
            raise failure[0]

    def _serve(self, stages: Stages) -> None:
        """The socket loop: register, heartbeats both ways, batches in, results out, reconnects.

        One DEALER a broker (``--connect a,b``). The worker's capacity is leased out among
        them (``lease``), so that together they never send it more batches than it holds; a
        batch's result goes back to the broker that sent it. Each link reconnects on its own
        when its broker falls silent.
        """
        links = [BrokerLink(address, capacity) for address, capacity in
                 zip(self.config.brokers, lease(self.config.capacity, len(self.config.brokers)))]
        poller = zmq.Poller()
        poller.register(stages.socket, zmq.POLLIN)
        for link in links:
            self._open(link, poller)
        routes = BatchRoutes(links)
        interval = self.config.heartbeat_interval_s
        next_check = time.monotonic() + interval
        draining = False
        parent = os.getppid()
        logger.info("worker %d connected to %s", os.getpid(), ", ".join(self.config.brokers))
        try:
            while True:
                if os.getppid() != parent and not self._stop.is_set():
                    logger.warning("parent process is gone; finishing up")
                    self._stop.set()
                if self._stop.is_set() and not draining:
                    draining = True
                    for link in links:
                        link.send(P.encode_draining())
                if draining and stages.pending == 0:
                    for link in links:
                        link.send(P.encode_bye())
                    logger.info("worker %d finished its batches; goodbye", os.getpid())
                    return
                due = min(next_check, *(min(link.next_heartbeat, link.expires, link.reconnect_at) for link in links))
                events = dict(poller.poll(max(0, min(250, int(1000 * (due - time.monotonic()))))))
                now = time.monotonic()
                if stages.socket in events:
                    for frames in stages.collect():
                        routes.send_back(frames)
                if now >= next_check:  # the stages' health (a device process gone ends this worker)
                    stages.check()
                    next_check = now + interval
                for link in links:
                    if link.dealer is not None and link.dealer in events:
                        for frames in received(link.dealer):
                            link.heard(now, interval * self.config.liveness, self.config.reconnect_initial_s)
                            for reply in self._on_broker(frames, stages, link, routes):
                                routes.send_back(reply, link)
                    self._tend(link, poller, now)
        finally:
            for link in links:
                if link.dealer is not None:
                    link.dealer.close(0)

    def _open(self, link: "BrokerLink", poller: zmq.Poller) -> None:
        self._connect(link)
        poller.register(link.dealer, zmq.POLLIN)
        now = time.monotonic()
        interval = self.config.heartbeat_interval_s
        link.expires, link.next_heartbeat, link.reconnect_at = now + interval * self.config.liveness, now + interval, \
            float("inf")

    def _tend(self, link: "BrokerLink", poller: zmq.Poller, now: float) -> None:
        """A link's heartbeat, and its reconnection (with backoff) when its broker has gone silent."""
        interval = self.config.heartbeat_interval_s
        if link.dealer is None:
            if now >= link.reconnect_at:
                self._open(link, poller)
            return
        if now >= link.next_heartbeat:
            link.send(P.encode_heartbeat(self.host.host, self.host.read()))
            link.next_heartbeat = now + interval
        if now >= link.expires:
            logger.warning("broker %s silent for %.1f s; reconnecting in %.2f s", link.address,
                           interval * self.config.liveness, link.backoff)
            poller.unregister(link.dealer)
            link.dealer.close(0)
            link.dealer, link.reconnect_at = None, now + link.backoff
            link.expires = link.next_heartbeat = float("inf")  # until it is open again
            link.backoff = min(link.backoff * 2, self.config.reconnect_max_s)

    def _on_broker(self, frames: list[bytes], stages: Stages, link: "BrokerLink",
                   routes: "BatchRoutes") -> list[list[bytes]]:
        """Act on one message from a broker; returns what to send back now (batch results go by their route)."""
        try:
            header = P.unpack(frames)
        except P.ProtocolError as exc:
            logger.warning("dropped a malformed message from the broker: %s", exc.message)
            return []
        op = header.get("op")
        if op == P.B_BATCH:
            return stages.submit(routes.taken(P.decode_batch(header), link))
        if op == P.B_DISCONNECT:
            logger.info("broker %s asked this worker to register again", link.address)
            return [P.encode_ready(self.info(link.capacity))]
        if op == P.B_REFUSED:
            raise WorkerRefused(f"the broker refused this worker: {header.get('reason')}")
        if op != P.B_HEARTBEAT:
            logger.warning("unknown op %r from the broker", op)
        return []


def lease(capacity: int, brokers: int) -> list[int]:
    """The worker's batches in flight, shared out among its brokers: never more than ``capacity`` together,
    at least one each (a worker given more brokers than capacity holds one batch a broker)."""
    if brokers > capacity:
        logger.warning("capacity %d is below the %d brokers: one batch in flight a broker", capacity, brokers)
        return [1] * brokers
    return [capacity // brokers + (1 if k < capacity % brokers else 0) for k in range(brokers)]


class BrokerLink:
    """One broker of the worker's: its socket (None while reconnecting), lease and liveness."""

    def __init__(self, address: str, capacity: int) -> None:
        self.address, self.capacity = address, capacity
        self.dealer: zmq.Socket | None = None
        self.expires = self.next_heartbeat = self.reconnect_at = 0.0
        self.backoff = 0.25

    def heard(self, now: float, expiry_s: float, backoff_s: float) -> None:
        self.expires, self.backoff = now + expiry_s, backoff_s

    def send(self, frames: list[bytes]) -> None:
        if self.dealer is not None:
            self.dealer.send_multipart(frames)


class BatchRoutes:
    """Where each batch's result goes back: with one broker, straight to it; with several, batches get
    ids of the worker's own (brokers' ids may meet) and results are sent to their broker under its id."""

    def __init__(self, links: list[BrokerLink]) -> None:
        self.links = links
        self._taken: dict[int, tuple[BrokerLink, int]] = {}
        self._ids = iter(range(1, 1 << 62))

    def taken(self, message: P.BatchMessage, link: BrokerLink) -> P.BatchMessage:
        if len(self.links) > 1:
            local = next(self._ids)
            self._taken[local] = (link, message.id)
            message.id = local
        return message

    def send_back(self, frames: list[bytes], link: BrokerLink | None = None) -> None:
        """A result or failure (by its batch's route), or any reply to ``link``."""
        if len(self.links) == 1:
            self.links[0].send(frames)
            return
        header = P.unpack(frames)
        route = self._taken.pop(header.get("id"), None) if header.get("op") in (P.W_RESULT, P.W_FAILED) else None
        if route is None:
            if link is not None:
                link.send(frames)
            return
        link, header["id"] = route
        link.send(P.pack(header))


def run_worker(config: WorkerConfig) -> int:
    """Process entry point: returns an exit status, logs the reason for any failure."""
    from rerankpool.logs import setup_logging

    setup_logging(prefix=config.name)
    try:
        worker = Worker(config)
    except EngineGone as exc:  # the device process is not there (yet): try again after the supervisor's backoff
        logger.error("%s", exc)
        return 1
    except Exception as exc:
        logger.error("could not start: %s", exc)
        logger.debug("details", exc_info=True)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: worker.request_stop())
    signal.signal(signal.SIGINT, lambda *_: worker.request_stop())
    try:
        worker.run()
    except WorkerRefused as exc:
        logger.error("%s", exc)
        return 3
    except EngineGone as exc:  # the supervisor restarts this worker; the broker retries its batches
        logger.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_worker(WorkerConfig()))
