"""The worker's side of ``--device-process``: an engine that runs its chunks in the host's device process."""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import zmq

from rerankpool import protocol as P
from rerankpool.worker.device_process import chunk_arrays
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


class DeviceClient:
    """Sends each chunk to the device process and waits for its scores.

    The wait is in slices: between them the device process's pid is checked, so a worker
    whose device process died raises ``EngineGone`` (the worker exits, the supervisor
    restarts it) instead of waiting for a reply that will never come.
    """

    def __init__(self, endpoint: str, ctx: zmq.Context, start_timeout_s: float = 600.0,
                 check_every_s: float = 1.0) -> None:
        self.endpoint = endpoint
        self.check_every_ms = int(1000 * check_every_s)
        self._sock = ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(endpoint)
        self._sock.send_multipart(P.pack({"op": P.D_HELLO}))
        deadline = time.monotonic() + start_timeout_s
        while not self._sock.poll(self.check_every_ms):
            if time.monotonic() > deadline:  # not fatal: the supervisor restarts this worker, which asks again
                raise EngineGone(
                    f"no device process answered at {endpoint} within {start_timeout_s:.0f} s "
                    "(it is started by `rerankpool worker --device-process`)"
                )
        info = P.unpack(self._sock.recv_multipart())["info"]
        self.name, self.device, self.dtype = info["engine"], info["device"], info["dtype"]
        self.packed: bool = info["packed"]
        self.pid: int = info["pid"]
        self._memory: dict[str, float] = {}
        self._device_ms = 0.0  # summed over the chunks since take_device_ms
        logger.info("running the model in device process %d (%s on %s)", self.pid, self.name, self.device)

    def forward(self, chunk: Chunk | PackedChunk) -> np.ndarray:
        kind, arrays = chunk_arrays(chunk)
        self._sock.send_multipart(P.encode_forward(kind, arrays), copy=False)
        while not self._sock.poll(self.check_every_ms):
            if not _alive(self.pid):
                raise EngineGone(f"device process {self.pid} at {self.endpoint} is gone")
        header = P.unpack(self._sock.recv_multipart())
        if not header.get("ok"):
            raise RuntimeError(f"device process: {header.get('error')}")
        self._memory = header.get("memory", {})
        self.pid = header.get("pid", self.pid)  # a restarted device process, reached after a reconnect
        self._device_ms += float(header.get("device_ms", 0.0))
        if isinstance(chunk, PackedChunk) and header["computed_tokens"] != chunk.real_tokens:
            chunk.computed_tokens = header["computed_tokens"]
        return P.from_f32(header["scores"])

    def take_device_ms(self) -> float:
        """Time the chunks forwarded since the last call spent in the device process, ms (then reset)."""
        spent, self._device_ms = self._device_ms, 0.0
        return spent

    def warmup(self, shapes: list[tuple[int, int]]) -> None:
        """Nothing to do: the device process warmed the model up before it answered hello."""

    def memory(self) -> dict[str, float]:
        """The device process's allocator figures, as of its last reply."""
        return self._memory
