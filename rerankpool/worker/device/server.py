"""One process per device that runs the model for the workers of its host (``--device-process``).

With a worker process per share of the GPU, each worker both tokenizes and launches
kernels. On the H100 host that left the L6 stand-in at 58-67 % of its forward ceiling:
flash-tokenizer holds the GIL, so tokenizing and launching did not overlap inside a
worker, and four CUDA contexts took turns on the GPU. Here the workers only tokenize;
they hand their packed batches to this process over ipc, which owns the one CUDA
context, runs the model on its main thread, merges the batches that arrived together
into one forward pass (fewer launches per pair, up to ``max_tokens``) and launches the
next pass before it waits for the last. Its throughput on the H100, and the same
workers each running the model (``--no-device-process``), are in ``bench/RESULTS.md``.

The merging is plain functions (``merge_packed``, ``split_scores``), tested without a
socket; ``DeviceServer`` is the thin socket loop around them.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq

from rerankpool import protocol as P
from rerankpool.heap import freeze_startup_heap
from rerankpool.worker.config import WorkerConfig
from rerankpool.worker.device.wire import chunk_from_arrays
from rerankpool.worker.engines.base import AsyncEngine, Chunk, Engine, PackedChunk
from rerankpool.worker.policy import PACKED_POLICY, warmup_shapes

logger = logging.getLogger(__name__)

# Tokens per merged pass at most: two workers' largest packed chunks (L12 fp16: ~0.8 GB of activations).
DEFAULT_PASS_TOKENS = 2 * (PACKED_POLICY.max_tokens or 65_536)


def device_endpoint(device: str, slot: int = 0) -> str:
    """An ipc endpoint for the device process of ``device`` (the ``slot``-th: one a model), unique to this
    supervisor."""
    name = f"rerankpool-{os.getpid()}-{device.replace(':', '')}-{slot}.ipc"
    return f"ipc://{os.path.join(tempfile.gettempdir(), name)}"


def merge_packed(chunks: list[PackedChunk]) -> PackedChunk:
    """Packed chunks back to back as one (packed attention needs no order across pairs)."""
    lengths = np.concatenate([c.lengths for c in chunks])
    return PackedChunk(
        rows=np.arange(len(lengths)),
        input_ids=np.concatenate([c.input_ids for c in chunks]),
        token_type_ids=np.concatenate([c.token_type_ids for c in chunks]),
        lengths=lengths,
    )


def split_scores(scores: np.ndarray, chunks: list[Chunk | PackedChunk]) -> list[np.ndarray]:
    """A merged pass's scores, cut back into one array per chunk."""
    return np.split(scores, np.cumsum([len(c.rows) for c in chunks])[:-1])


@dataclass
class _Request:
    peer: bytes
    tag: int  # the worker's, echoed in the reply
    chunk: Chunk | PackedChunk
    received: float  # perf_counter when taken off the socket

    @property
    def tokens(self) -> int:
        return self.chunk.real_tokens


@dataclass
class _Pass:
    """One forward pass launched on the device: the requests it answers and what to wait on."""

    requests: list[_Request]
    chunk: Chunk | PackedChunk  # the requests' chunks, merged when there are several
    in_flight: Any


class DeviceServer:
    """Serves forward requests from this host's workers with one engine, merging those that wait together.

    With an ``AsyncEngine`` (torch) it keeps up to ``depth`` passes in flight: the next
    pass is launched while the GPU still runs the last one, so the GPU does not idle
    while this process replies, takes, merges and copies.
    """

    def __init__(self, engine: Engine, sock: zmq.Socket, max_tokens: int, depth: int = 2) -> None:
        self.engine = engine
        self.sock = sock
        self.max_tokens = max_tokens
        # Other engines run each pass to the end in ``_start``.
        self._async = engine if isinstance(engine, AsyncEngine) else None
        self.depth = depth if self._async else 1
        self.merged_passes = 0  # passes that ran more than one worker's chunk
        self._held: _Request | None = None  # taken off the socket but over this pass's token budget
        self._in_flight: deque[_Pass] = deque()

    def serve(self, stop: threading.Event) -> None:
        while not stop.is_set():
            if not self._in_flight and self._held is None and not self.sock.poll(250):
                continue
            self.step()

    def step(self) -> None:
        """Launch what waits, if there is room; otherwise (or when nothing waits) finish the oldest pass.

        While a short pass runs and there is room for another, the step returns instead of
        waiting for it, so the next step looks at the socket again: a chunk that arrives
        meanwhile (a lone request's other half, from a second worker) is launched behind it
        at once, not after its reply.
        """
        if len(self._in_flight) < self.depth:
            requests = self._take()
            if requests:
                self._launch(requests)
                if len(self._in_flight) < self.depth:
                    return
            elif self._in_flight and self._async is not None and self._async.running(self._in_flight[0].in_flight):
                return
        if self._in_flight:
            self._finish(self._in_flight.popleft())

    def drain(self) -> None:
        """Finish every pass in flight."""
        while self._in_flight:
            self._finish(self._in_flight.popleft())

    def _take(self) -> list[_Request]:
        """The requests waiting now, up to ``max_tokens`` in all (at least one)."""
        taken: list[_Request] = []
        tokens = 0
        if self._held is not None:
            taken, tokens, self._held = [self._held], self._held.tokens, None
        while True:
            try:
                peer, *frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return taken
            request = self._decode(peer.bytes, frames)
            if request is None:
                continue
            if taken and tokens + request.tokens > self.max_tokens:
                self._held = request
                return taken
            taken.append(request)
            tokens += request.tokens

    def _decode(self, peer: bytes, frames: list[zmq.Frame]) -> _Request | None:
        """A forward request, or None after answering anything else (hello, bad input)."""
        header: dict = {}
        try:
            header = P.unpack([f.bytes for f in frames[:2]])
            op = header.get("op")
            if op == P.D_HELLO:
                engine = self.engine
                self._reply(peer, P.encode_device_info(engine=engine.name, device=engine.device, dtype=engine.dtype,
                                                       packed=engine.packed, pid=os.getpid()))
                return None
            if op != P.D_FORWARD:
                raise P.ProtocolError(P.ErrorCode.UNKNOWN_OP, f"unknown op {op!r} for a device process")
            kind, arrays = P.decode_forward(header, [f.buffer for f in frames[2:]])
            tag = header.get("tag")
            if not isinstance(tag, int):
                raise P.ProtocolError(P.ErrorCode.BAD_REQUEST, "forward: 'tag' must be an int")
            return _Request(peer, tag, chunk_from_arrays(kind, arrays), time.perf_counter())
        except (P.ProtocolError, ValueError, TypeError) as exc:
            message = exc.message if isinstance(exc, P.ProtocolError) else str(exc)
            logger.warning("refused a malformed request from a worker: %s", message)
            tag = header.get("tag")  # {} when the header itself could not be read
            self._reply(peer, P.encode_device_error(tag if isinstance(tag, int) else None, message))
            return None

    def _launch(self, requests: list[_Request]) -> None:
        packed = [r for r in requests if isinstance(r.chunk, PackedChunk)]
        alone = [r for r in requests if not isinstance(r.chunk, PackedChunk)]
        if len(packed) > 1:
            try:
                merged = merge_packed([r.chunk for r in packed])  # type: ignore[misc]
                self._in_flight.append(_Pass(packed, merged, self._start(merged)))
            except Exception:  # one bad chunk must not fail the others: run each alone
                logger.warning("a merged pass of %d chunks failed; running them one by one", len(packed))
                alone += packed
        else:
            alone += packed
        for request in alone:
            try:
                self._in_flight.append(_Pass([request], request.chunk, self._start(request.chunk)))
            except Exception as exc:
                self._failed([request], exc)

    def _start(self, chunk: Chunk | PackedChunk) -> Any:
        return self._async.launch(chunk) if self._async else self.engine.forward(chunk)

    def _finish(self, done: _Pass) -> None:
        try:
            scores = self._async.collect(done.in_flight) if self._async else done.in_flight
        except Exception as exc:
            self._failed(done.requests, exc)
            return
        chunks = [r.chunk for r in done.requests]
        self.merged_passes += len(chunks) > 1
        share = done.chunk.padded_tokens / max(1, done.chunk.real_tokens)  # a graph's padding, shared out
        memory = self.engine.memory()
        for request, part in zip(done.requests, split_scores(scores, chunks)):
            self._scores(request, part, round(request.tokens * share), memory)

    def _failed(self, requests: list[_Request], exc: Exception) -> None:
        logger.error("forward pass failed: %s: %s", type(exc).__name__, exc)
        for request in requests:
            self._reply(request.peer, P.encode_device_error(request.tag, f"{type(exc).__name__}: {exc}"))

    def _scores(self, request: _Request, scores: np.ndarray, computed_tokens: int, memory: dict[str, float]) -> None:
        self._reply(request.peer, P.encode_forward_scores(
            request.tag, scores, computed_tokens=int(computed_tokens), memory=memory, pid=os.getpid(),
            device_ms=1000.0 * (time.perf_counter() - request.received)))

    def _reply(self, peer: bytes, frames: list[bytes]) -> None:
        self.sock.send_multipart([peer, *frames])


@dataclass(frozen=True)
class DeviceProcessConfig:
    """The device process of one device: the workers' config (model, engine, dtype...) and where to listen."""

    worker: WorkerConfig  # its name names the process
    endpoint: str
    max_tokens: int = DEFAULT_PASS_TOKENS  # per merged pass

    @property
    def name(self) -> str:
        return self.worker.name


def run_device_process(config: DeviceProcessConfig) -> int:
    """Process entry point: load and warm up the model, then serve until SIGTERM (exit 2: could not load)."""
    from rerankpool.logs import setup_logging
    from rerankpool.models import resolve_model
    from rerankpool.worker.engines import load_engine

    setup_logging(prefix=config.name)
    worker = config.worker
    try:
        engine = load_engine(worker.engine_config(resolve_model(worker.model)))
        if worker.warmup:
            engine.warmup(warmup_shapes(worker.policy(packed=engine.packed), worker.max_length))
    except Exception as exc:
        logger.error("could not start: %s", exc)
        logger.debug("details", exc_info=True)
        return 2
    freeze_startup_heap()  # torch, the model and its CUDA graphs are loaded for good
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # Ctrl-C reaches the whole process group: the workers drain on it and still need this
    # process for their last batches. The supervisor sends SIGTERM once they are done.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.bind(config.endpoint)
    server = DeviceServer(engine, sock, config.max_tokens)
    logger.info("device process %d serving %s on %s at %s", os.getpid(), engine.name, engine.device, config.endpoint)
    parent = os.getppid()
    watcher = threading.Thread(target=_stop_with_parent, args=(parent, stop), daemon=True)
    watcher.start()
    try:
        server.serve(stop)
        server.drain()
    finally:
        sock.close()
        if config.endpoint.startswith("ipc://"):
            try:
                os.unlink(config.endpoint[len("ipc://"):])
            except OSError:
                pass
    logger.info("device process stopped (%d merged passes)", server.merged_passes)
    return 0


def _stop_with_parent(parent: int, stop: threading.Event) -> None:
    """An orphaned device process would hold the GPU forever: stop when the supervisor is gone."""
    while not stop.wait(1.0):
        if os.getppid() != parent:
            logger.warning("parent process is gone; stopping")
            stop.set()
