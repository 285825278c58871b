"""A ``--device-process`` worker's stages, on its socket thread alone: tokenize, hand off, answer.

Where the worker runs the model itself, tokenizing and the forward pass run on two
threads (``rerankpool.worker.pipeline``). With a device process, the model runs
elsewhere and the worker only tokenizes, so it needs no thread of its own for it:
the socket thread tokenizes a batch as it arrives, sends its chunks to the device
process without waiting, and answers the broker when the last chunk's scores are
back. While the device process runs one batch, the next is tokenized, as before.
This saves the three thread hand-offs a batch took (socket thread to tokenizer to
forward loop and back), about 0.2 ms of a lone request on the H100 host.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import zmq

from rerankpool import protocol as P
from rerankpool.sockets import received
from rerankpool.worker.device_client import DeviceClient, DeviceReply
from rerankpool.worker.engines.base import Chunk, EncodedBatch, PackedChunk
from rerankpool.worker.tokenize import ChunkPolicy, PairTokenizer

logger = logging.getLogger(__name__)


@dataclass
class OpenBatch:
    """A batch whose chunks are with the device process; its scores fill in as their replies come."""

    message: P.BatchMessage
    encoded: EncodedBatch
    arrived: float  # perf_counter when the batch came off the broker's socket
    tokenize_ms: float
    sent: float  # perf_counter when its chunks were sent
    waiting: int  # chunks not yet answered
    scores: np.ndarray = field(init=False)
    device_ms: float = 0.0  # its chunks' time in the device process; they go together, so the longest
    error: str | None = None

    def __post_init__(self) -> None:
        self.scores = np.empty(self.encoded.size, dtype=np.float32)

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
        end = time.perf_counter()
        timings = P.BatchTimings(
            size=self.encoded.size,
            tokenize_ms=self.tokenize_ms,
            inference_ms=1000.0 * (end - self.sent),
            real_tokens=self.encoded.real_tokens,
            padded_tokens=self.encoded.padded_tokens,
            chunks=len(self.encoded.chunks),
            worker_ms=1000.0 * (end - self.arrived),
            device_ms=self.device_ms,
        )
        return P.encode_result(self.message.id, self.scores, timings, memory)


class DeviceStages:
    """Tokenizes on the calling thread and keeps the batches' chunks in flight with the device process.

    The worker's socket loop calls ``submit`` for each batch, polls ``socket``, calls
    ``collect`` when it is readable and ``check`` now and then; each returns the frames
    to send to the broker.
    """

    def __init__(self, tokenizer: PairTokenizer, device: DeviceClient, policy: ChunkPolicy) -> None:
        self.tokenizer = tokenizer
        self.device = device
        self.policy = policy
        self.socket: zmq.Socket = device.socket
        self._open: dict[int, OpenBatch] = {}  # by batch id
        self._chunks: dict[int, tuple[int, Chunk | PackedChunk]] = {}  # by tag: (batch id, chunk)

    @property
    def pending(self) -> int:
        """Batches submitted and not yet answered."""
        return len(self._open)

    def submit(self, message: P.BatchMessage) -> list[list[bytes]]:
        arrived = time.perf_counter()
        try:
            encoded = self.tokenizer.encode(message.queries, message.query_index, message.docs, self.policy)
        except Exception as exc:
            return [P.encode_failed(message.id, f"tokenization failed: {exc!r}")]
        sent = time.perf_counter()
        batch = OpenBatch(message, encoded, arrived, 1000.0 * (sent - arrived), sent, len(encoded.chunks))
        if not encoded.chunks:  # nothing to run
            return [batch.result(self.device.memory())]
        self._open[message.id] = batch
        for chunk in encoded.chunks:
            self._chunks[self.device.send(chunk)] = (message.id, chunk)
        return []

    def collect(self) -> list[list[bytes]]:
        """Read the device process's replies; the frames of every batch they complete."""
        done = []
        for frames in received(self.socket):
            try:
                reply = self.device.read(frames)
            except P.ProtocolError as exc:
                logger.warning("dropped a malformed reply from the device process: %s", exc.message)
                continue
            if reply.tag is None:
                # The device process could not read a request of ours, and which one is unknown:
                # every open batch fails (the broker fails their requests) rather than wait forever.
                logger.error("the device process answered a request it could not read: %s", reply.error)
                done += self._fail_all(reply.error or "device process: unreadable request")
                continue
            if reply.tag not in self._chunks:  # a chunk of a batch that already failed
                continue
            batch_id, chunk = self._chunks.pop(reply.tag)
            batch = self._open[batch_id]
            if batch.add(chunk, reply):
                del self._open[batch_id]
                done.append(batch.result(self.device.memory()))
        return done

    def check(self) -> None:
        """Raise ``EngineGone`` if chunks are out and the device process has died."""
        if self._chunks:
            self.device.check_alive()

    def _fail_all(self, error: str) -> list[list[bytes]]:
        frames = [P.encode_failed(batch_id, error) for batch_id in self._open]
        self._open.clear()
        self._chunks.clear()
        return frames
