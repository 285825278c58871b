"""A ``--device-process`` worker's stages, on its socket thread alone: tokenize, hand off, answer.

Where the worker runs the model itself, tokenizing and the forward pass run on two
threads (``rerankpool.worker.pipeline``). With a device process, the model runs
elsewhere and the worker only tokenizes, so it needs no thread of its own for it:
the socket thread tokenizes a batch as it arrives, sends its chunks to the device
process without waiting, and answers the broker when the last chunk's scores are
back. While the device process runs one batch, the next is tokenized, as before.
This saves the three thread hand-offs a batch took (socket thread to tokenizer to
forward loop and back): a lone request took 0.1-0.6 ms less on the H100 host, and at
saturation a worker's next batch reaches the device process while its last one runs
(an A/B against 280102c on one host: ``bench/results/GPU.md`` in git history at edd338e;
today's figures are in ``bench/RESULTS.md``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import zmq

from rerankpool import protocol as P
from rerankpool.sockets import received
from rerankpool.worker.device.client import DeviceClient, DeviceReply
from rerankpool.worker.engines.base import Chunk, EncodedBatch, EngineGone, PackedChunk
from rerankpool.worker.policy import ChunkPolicy
from rerankpool.worker.stages import batch_timings
from rerankpool.worker.tokenize import PairTokenizer

logger = logging.getLogger(__name__)


@dataclass(eq=False)  # each batch is its own: a restarted broker may reuse an id
class OpenBatch:
    """A batch whose chunks are with the device process; its scores fill in as their replies come."""

    message: P.BatchMessage
    encoded: EncodedBatch
    arrived: float  # perf_counter when the batch came off the broker's socket
    sent: float  # perf_counter when its chunks were sent (after tokenizing)
    waiting: int = field(init=False)  # chunks not yet answered
    scores: np.ndarray = field(init=False)
    device_ms: float = 0.0  # its chunks' time in the device process; they go together, so the longest
    error: str | None = None

    def __post_init__(self) -> None:
        self.waiting = len(self.encoded.chunks)
        self.scores = np.zeros(self.encoded.size, dtype=np.float32)

    def add(self, chunk: Chunk | PackedChunk, reply: DeviceReply) -> bool:
        """One chunk's reply; True once every chunk is in."""
        self.waiting -= 1
        if reply.scores is None:
            self.error = self.error or reply.error
        elif len(reply.scores) != len(chunk.rows):
            self.error = self.error or f"device process: {len(reply.scores)} scores for {len(chunk.rows)} pairs"
        else:
            self.scores[chunk.rows] = reply.scores
            self.device_ms = max(self.device_ms, reply.device_ms)  # sent together: the batch's span
            if isinstance(chunk, PackedChunk) and reply.computed_tokens not in (None, chunk.real_tokens):
                chunk.computed_tokens = reply.computed_tokens
        return self.waiting == 0

    def result(self, memory: dict[str, float]) -> list[bytes]:
        """The frames for the broker: the scores and timings, or why the batch failed."""
        if self.error is not None:
            return P.encode_failed(self.message.id, self.error)
        timings = batch_timings(self.encoded, arrived=self.arrived, tokenize_ms=1000.0 * (self.sent - self.arrived),
                                started=self.sent, device_ms=self.device_ms)
        return P.encode_result(self.message.id, self.scores, timings, memory, self.encoded.pair_tokens(),
                               self.encoded.refused, self.encoded.windows)


class DeviceStages:
    """Tokenizes on the calling thread and keeps the batches' chunks in flight with the device process.

    It implements ``rerankpool.worker.stages.Stages``, as ``Pipeline`` does. The
    worker's socket loop calls ``submit`` for each batch, polls ``socket`` and calls
    ``collect`` when it is readable; both return the frames to send to the broker. It
    calls ``check`` now and then, which raises ``EngineGone`` if the device process is
    gone, as ``collect`` does when its replies stop making sense: the worker exits, the
    supervisor restarts it and the broker gives its batches to other workers.
    """

    def __init__(self, tokenizer: PairTokenizer, device: DeviceClient, policy: ChunkPolicy) -> None:
        self.tokenizer = tokenizer
        self.device = device
        self.policy = policy
        self.socket: zmq.Socket = device.socket
        self._open: set[OpenBatch] = set()
        self._chunks: dict[int, tuple[OpenBatch, Chunk | PackedChunk]] = {}  # by tag

    @property
    def pending(self) -> int:
        """Batches submitted and not yet answered."""
        return len(self._open)

    def submit(self, message: P.BatchMessage) -> list[list[bytes]]:
        """Tokenize a batch and send its chunks on; returns the results already back (and a failure)."""
        done = self.collect()  # first the batches the device process has finished meanwhile
        arrived = time.perf_counter()
        try:
            encoded = self.tokenizer.encode(message.queries, message.query_index, message.docs, self.policy,
                                            message.truncations, message.split)
        except Exception as exc:
            return [*done, P.encode_failed(message.id, f"tokenization failed: {exc!r}")]
        batch = OpenBatch(message, encoded, arrived, time.perf_counter())
        if not encoded.chunks:  # nothing to run
            return [*done, batch.result(self.device.memory())]
        self._open.add(batch)
        for chunk in encoded.chunks:
            self._chunks[self.device.send(chunk)] = (batch, chunk)
        return done

    def collect(self) -> list[list[bytes]]:
        """Read the device process's replies; the frames of every batch they complete."""
        done = []
        for frames in received(self.socket):
            reply = self.device.read(frames)  # EngineGone if it cannot be read, or came from a new process
            if reply.tag not in self._chunks:
                raise EngineGone(f"the device process answered a request this worker did not send: {reply.error}")
            batch, chunk = self._chunks.pop(reply.tag)
            if batch.add(chunk, reply):
                self._open.discard(batch)
                done.append(batch.result(self.device.memory()))
        return done

    def check(self) -> None:
        """Raise ``EngineGone`` if chunks are out and the device process has died."""
        if self._chunks:
            self.device.check_alive()
