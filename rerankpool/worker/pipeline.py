"""The stages of a worker that runs the model itself: a tokenizer thread feeding the forward loop.

(With ``--device-process`` the model runs elsewhere, and ``device.stages`` does the
worker's part on its socket thread alone; both implement ``rerankpool.worker.stages.Stages``.)

While the model runs batch k, the tokenizer thread prepares batch k+1 (``tokenizers``
releases the GIL while it works; flash-tokenizer holds it, for a sixth of the time).
The forward loop runs on the thread that loaded the model, the process's main thread:
measured on an H100, the same CUDA forward pass ran 4x slower from a second Python
thread (see ``rerankpool.bench.profile``). Finished batches go to the socket thread
through an inproc PUSH socket, so the socket loop wakes on results without polling or
sleeps. A crash in a stage is reported, never swallowed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Callable

import zmq

from rerankpool import protocol as P
from rerankpool.sockets import received
from rerankpool.worker.engines.base import EncodedBatch, Engine, run_batch
from rerankpool.worker.policy import ChunkPolicy
from rerankpool.worker.stages import batch_timings
from rerankpool.worker.tokenize import PairTokenizer

logger = logging.getLogger(__name__)

_STOP = object()
FATAL = b"fatal"


@dataclass
class _Tokenized:
    message: P.BatchMessage
    encoded: EncodedBatch
    tokenize_ms: float
    arrived: float  # perf_counter when the socket thread handed the batch over


class Pipeline:
    """Runs batches through tokenizer and engine; their results are read off ``socket``.

    The worker's socket loop calls ``submit`` for each batch, polls ``socket`` and calls
    ``collect`` when it is readable (and ``check``, which has nothing to check here);
    ``collect`` returns each finished batch's frames (a ``result`` or ``failed`` message)
    and raises if a stage crashed. Call ``start()``, then ``run_forward()`` on the model's
    thread; it returns after ``stop()``.
    """

    def __init__(
        self,
        ctx: zmq.Context,
        tokenizer: PairTokenizer,
        engine: Engine,
        policy: ChunkPolicy,
        depth: int = 1,
    ) -> None:
        self.endpoint = f"inproc://rerankpool-results-{id(self)}"
        self.tokenizer = tokenizer
        self.engine = engine
        self.policy = policy
        self._ctx = ctx
        self.socket: zmq.Socket = ctx.socket(zmq.PULL)  # the stages' results, for the socket thread
        self.socket.bind(self.endpoint)
        self._inbox: queue.Queue = queue.Queue()
        self._tokenized: queue.Queue = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._guard, args=(self._tokenize_loop,), name="tokenize", daemon=True)
        self.pending = 0  # batches submitted and not yet reported (socket thread only)

    def start(self) -> None:
        self._thread.start()

    def submit(self, message: P.BatchMessage) -> list[list[bytes]]:
        """Hand a batch to the tokenizer thread; its result comes through ``collect``."""
        self.pending += 1
        self._inbox.put((message, time.perf_counter()))
        return []

    def collect(self) -> list[list[bytes]]:
        """The results waiting on ``socket`` (socket thread only); raises if a stage crashed."""
        done = []
        for frames in received(self.socket):
            if frames[0] == FATAL:
                raise RuntimeError("a worker stage crashed:\n" + frames[1].decode())
            self.pending -= 1
            done.append(frames)
        return done

    def check(self) -> None:
        """Nothing to check: a stage that fails says so through ``collect``."""

    def close(self) -> None:
        self.socket.close(0)

    def stop(self) -> None:
        """End both stages once the batches already submitted are done."""
        self._inbox.put(_STOP)

    def run_forward(self) -> None:
        """The forward loop; blocks until ``stop()``. Run it on the thread that loaded the model."""
        if self._guard(self._forward_loop):
            self._thread.join(timeout=30)

    def _guard(self, loop: Callable[[zmq.Socket], None]) -> bool:
        """Run a stage; a crash is logged and sent on as FATAL. True if the stage ended normally."""
        out = self._ctx.socket(zmq.PUSH)
        out.setsockopt(zmq.LINGER, 1000)
        out.connect(self.endpoint)
        try:
            loop(out)
            return True
        except Exception:
            logger.exception("worker stage %s crashed", threading.current_thread().name)
            out.send_multipart([FATAL, traceback.format_exc().encode()])
            return False
        finally:
            out.close()

    def _tokenize_loop(self, out: zmq.Socket) -> None:
        while True:
            item = self._inbox.get()
            if item is _STOP:
                self._tokenized.put(_STOP)
                return
            message, arrived = item
            start = time.perf_counter()
            try:
                encoded = self.tokenizer.encode(message.queries, message.query_index, message.docs, self.policy,
                                                message.truncations, message.split)
            except Exception as exc:
                out.send_multipart(P.encode_failed(message.id, f"tokenization failed: {exc!r}"))
                continue
            self._tokenized.put(_Tokenized(message, encoded, 1000.0 * (time.perf_counter() - start), arrived))

    def _forward_loop(self, out: zmq.Socket) -> None:
        while True:
            item = self._tokenized.get()
            if item is _STOP:
                return
            start = time.perf_counter()
            try:
                scores = run_batch(self.engine, item.encoded)
            except Exception as exc:
                logger.exception("batch %d failed in the model", item.message.id)
                out.send_multipart(P.encode_failed(item.message.id, f"{type(exc).__name__}: {exc}"))
                continue
            timings = batch_timings(item.encoded, arrived=item.arrived, tokenize_ms=item.tokenize_ms, started=start)
            out.send_multipart(P.encode_result(item.message.id, scores, timings, self.engine.memory(),
                                               item.encoded.pair_tokens(), item.encoded.refused,
                                               item.encoded.windows))
