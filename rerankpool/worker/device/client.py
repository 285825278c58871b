"""The worker's side of ``--device-process``: its chunks go to the host's device process, which runs the model."""

from __future__ import annotations

import itertools
import logging
import os
import time
from dataclasses import dataclass

import numpy as np
import zmq

from rerankpool import protocol as P
from rerankpool.worker.device.wire import chunk_arrays
from rerankpool.worker.engines.base import Chunk, EngineGone, PackedChunk

logger = logging.getLogger(__name__)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@dataclass
class DeviceReply:
    """The device process's answer to one chunk: its scores, or why there are none."""

    tag: int | None
    scores: np.ndarray | None
    error: str | None = None
    device_ms: float = 0.0  # the chunk's time in the device process
    computed_tokens: int | None = None  # tokens the pass computed for it (a CUDA graph pads)


class DeviceClient:
    """Sends chunks to the device process and reads its replies.

    A worker keeps several chunks in flight on one socket (its loop polls ``socket``):
    ``send`` returns the tag the chunk's reply will carry, ``read`` takes a reply.
    If the device process dies, the chunks it held are lost: ``check_alive`` (called while
    chunks are out) and ``read`` (a reply from a new process) raise ``EngineGone``, the
    worker exits, the supervisor restarts it, and the broker retries its batches.
    """

    def __init__(self, endpoint: str, ctx: zmq.Context, start_timeout_s: float = 600.0,
                 check_every_s: float = 1.0) -> None:
        self.endpoint = endpoint
        self.socket = ctx.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)
        self.socket.send_multipart(P.encode_hello())
        deadline = time.monotonic() + start_timeout_s
        while not self.socket.poll(int(1000 * check_every_s)):
            if time.monotonic() > deadline:  # not fatal: the supervisor restarts this worker, which asks again
                raise EngineGone(
                    f"no device process answered at {endpoint} within {start_timeout_s:.0f} s "
                    "(it is started by `rerankpool worker --device-process`)"
                )
        info = P.unpack(self.socket.recv_multipart())["info"]
        self.name, self.device, self.dtype = info["engine"], info["device"], info["dtype"]
        self.packed: bool = info["packed"]
        self.pid: int = info["pid"]
        self._memory: dict[str, float] = {}
        self._tags = itertools.count(1)
        logger.info("running the model in device process %d (%s on %s)", self.pid, self.name, self.device)

    def send(self, chunk: Chunk | PackedChunk) -> int:
        """Queue a chunk for the device process; returns the tag its reply will carry."""
        tag = next(self._tags)
        kind, arrays = chunk_arrays(chunk)
        self.socket.send_multipart(P.encode_forward(kind, arrays, tag=tag), copy=False)
        return tag

    def read(self, frames: list[bytes]) -> DeviceReply:
        """One reply off ``socket``, as sent by the device process."""
        try:
            header = P.unpack(frames)
            if header.get("ok") and header.get("pid", self.pid) != self.pid:
                raise EngineGone(f"device process {self.pid} was replaced by {header['pid']}: "
                                 "the chunks it held are lost")
            tag = header.get("tag")
            if not header.get("ok"):
                return DeviceReply(tag, None, f"device process: {header.get('error')}")
            self._memory = header.get("memory", {})
            return DeviceReply(tag, P.from_f32(header["scores"]), None, float(header.get("device_ms", 0.0)),
                               header.get("computed_tokens"))
        except (P.ProtocolError, KeyError, TypeError, ValueError) as exc:
            raise EngineGone(f"unreadable reply from device process {self.pid}: {exc}") from exc

    def check_alive(self) -> None:
        """Raise ``EngineGone`` if the device process has exited (its replies will never come)."""
        if not _alive(self.pid):
            raise EngineGone(f"device process {self.pid} at {self.endpoint} is gone")

    def memory(self) -> dict[str, float]:
        """The device process's allocator figures, as of its last reply."""
        return self._memory
