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

    def info(self) -> P.WorkerInfo:
        return P.WorkerInfo(
            model=self.model.name,
            label=self.model.label,
            engine=self.engine.name,
            device=self.engine.device,
            dtype=self.engine.dtype,
            capacity=self.config.capacity,
            pid=os.getpid(),
            host=pysocket.gethostname(),
            max_length=self.config.max_length,
            packed=self.engine.packed,
        )

    def request_stop(self) -> None:
        """Finish the batches held, say goodbye, exit (safe from a signal handler)."""
        self._stop.set()

    def _connect(self) -> zmq.Socket:
        dealer = self.ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        if self.config.security is not None:
            self.config.security.apply(dealer)
        dealer.connect(self.config.connect)
        dealer.send_multipart(P.encode_ready(self.info()))
        return dealer

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
        """The socket loop: register, heartbeats both ways, batches in, results out, reconnects."""
        dealer = self._connect()
        poller = zmq.Poller()
        poller.register(dealer, zmq.POLLIN)
        poller.register(stages.socket, zmq.POLLIN)
        interval = self.config.heartbeat_interval_s
        backoff = self.config.reconnect_initial_s
        broker_expires = time.monotonic() + interval * self.config.liveness
        next_heartbeat = time.monotonic() + interval
        draining = False
        parent = os.getppid()
        logger.info("worker %d connected to %s", os.getpid(), self.config.connect)
        try:
            while True:
                if os.getppid() != parent and not self._stop.is_set():
                    logger.warning("parent process is gone; finishing up")
                    self._stop.set()
                if self._stop.is_set() and not draining:
                    draining = True
                    dealer.send_multipart(P.encode_draining())
                if draining and stages.pending == 0:
                    dealer.send_multipart(P.encode_bye())
                    logger.info("worker %d finished its batches; goodbye", os.getpid())
                    return
                timeout_ms = max(0, int(1000 * (min(next_heartbeat, broker_expires) - time.monotonic())))
                events = dict(poller.poll(min(timeout_ms, 250)))
                now = time.monotonic()
                if stages.socket in events:
                    for frames in stages.collect():
                        dealer.send_multipart(frames)
                if dealer in events:
                    for frames in received(dealer):
                        broker_expires = now + interval * self.config.liveness
                        backoff = self.config.reconnect_initial_s
                        for reply in self._on_broker(frames, stages):
                            dealer.send_multipart(reply)
                if now >= next_heartbeat:
                    stages.check()
                    dealer.send_multipart(P.encode_heartbeat(self.host.host, self.host.read()))
                    next_heartbeat = now + interval
                if now >= broker_expires:
                    logger.warning("broker silent for %.1f s; reconnecting in %.2f s", interval * self.config.liveness,
                                   backoff)
                    poller.unregister(dealer)
                    dealer.close(0)
                    if self._stop.wait(backoff):
                        return
                    backoff = min(backoff * 2, self.config.reconnect_max_s)
                    dealer = self._connect()
                    poller.register(dealer, zmq.POLLIN)
                    broker_expires = time.monotonic() + interval * self.config.liveness
        finally:
            dealer.close(0)

    def _on_broker(self, frames: list[bytes], stages: Stages) -> list[list[bytes]]:
        """Act on one message from the broker; returns what to send it back now."""
        try:
            header = P.unpack(frames)
        except P.ProtocolError as exc:
            logger.warning("dropped a malformed message from the broker: %s", exc.message)
            return []
        op = header.get("op")
        if op == P.B_BATCH:
            return stages.submit(P.decode_batch(header))
        if op == P.B_DISCONNECT:
            logger.info("broker asked this worker to register again")
            return [P.encode_ready(self.info())]
        if op == P.B_REFUSED:
            raise WorkerRefused(f"the broker refused this worker: {header.get('reason')}")
        if op != P.B_HEARTBEAT:
            logger.warning("unknown op %r from the broker", op)
        return []


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
