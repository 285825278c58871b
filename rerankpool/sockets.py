"""Socket helpers shared by the broker, worker and client loops."""

from __future__ import annotations

from typing import Iterator

import zmq


def split_addresses(address: str) -> list[str]:
    """``"tcp://a:5555, tcp://b:5555"`` -> each broker's address (one stays one)."""
    addresses = [a.strip() for a in address.split(",") if a.strip()]
    if not addresses:
        raise ValueError("no broker address given")
    return addresses


def received(sock: zmq.Socket, limit: int = 1000) -> Iterator[list[bytes]]:
    """The messages waiting on ``sock`` now, without blocking (at most ``limit``, so one busy
    socket cannot starve the rest of the loop)."""
    for _ in range(limit):
        try:
            yield sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
