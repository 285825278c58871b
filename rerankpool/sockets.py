"""Socket helpers shared by the broker and worker loops."""

from __future__ import annotations

from typing import Iterator

import zmq


def received(sock: zmq.Socket, limit: int = 1000) -> Iterator[list[bytes]]:
    """The messages waiting on ``sock`` now, without blocking (at most ``limit``, so one busy
    socket cannot starve the rest of the loop)."""
    for _ in range(limit):
        try:
            yield sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
