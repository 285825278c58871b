"""What the worker's socket loop asks of its stages, and the timings every batch reports.

A worker's stages tokenize a batch and run it. Two implement ``Stages``:

- ``rerankpool.worker.pipeline.Pipeline``: the worker runs the model itself, a tokenizer
  thread feeding the forward loop on the main thread;
- ``rerankpool.worker.device.stages.DeviceStages``: the model runs in the host's device
  process, and the socket thread tokenizes and hands the chunks on.

Both report a finished batch's ``BatchTimings`` through ``batch_timings``, so the two
measure the same spans the same way.
"""

from __future__ import annotations

import time
from typing import Protocol

import zmq

from rerankpool import protocol as P
from rerankpool.worker.engines.base import EncodedBatch


class Stages(Protocol):
    """What the socket loop needs of a worker's stages (``Pipeline`` or ``DeviceStages``)."""

    socket: zmq.Socket  # readable when ``collect`` has results

    @property
    def pending(self) -> int:
        """Batches submitted and not yet answered."""

    def submit(self, message: P.BatchMessage) -> list[list[bytes]]:
        """Take a batch; returns frames for the broker now (a failure, or results already finished)."""

    def collect(self) -> list[list[bytes]]:
        """The frames of the batches finished since the last call."""

    def check(self) -> None:
        """Raise if the stages can run nothing more."""


def batch_timings(encoded: EncodedBatch, *, arrived: float, tokenize_ms: float, started: float,
                  device_ms: float = 0.0) -> P.BatchTimings:
    """The timings of a batch that has just finished (times from ``time.perf_counter``).

    ``arrived``: when the worker took the batch; ``tokenize_ms``: the time spent tokenizing
    it; ``started``: when its forward pass began (its chunks went to the device process);
    ``device_ms``: its chunks' time in the device process (0 when the worker runs the model).
    """
    end = time.perf_counter()
    return P.BatchTimings(
        size=encoded.size,
        tokenize_ms=tokenize_ms,
        inference_ms=1000.0 * (end - started),
        real_tokens=encoded.real_tokens,
        padded_tokens=encoded.padded_tokens,
        chunks=len(encoded.chunks),
        worker_ms=1000.0 * (end - arrived),
        device_ms=device_ms,
    )
