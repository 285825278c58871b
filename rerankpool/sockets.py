"""Socket helpers shared by the broker and worker loops."""

from __future__ import annotations

import time
from typing import Callable, Iterator, TypeVar

import zmq

T = TypeVar("T")


def received(sock: zmq.Socket, limit: int = 1000) -> Iterator[list[bytes]]:
    """The messages waiting on ``sock`` now, without blocking (at most ``limit``, so one busy
    socket cannot starve the rest of the loop)."""
    for _ in range(limit):
        try:
            yield sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return


class BusyPoll:
    """A poll that, for ``spin_s`` after the last event, checks without sleeping before it blocks.

    A process blocked in ``poll`` pays a wake-up when the next message arrives: the
    kernel's, and on a virtual machine the hypervisor's. On the request path of a lone
    request that is paid at every hop. Spinning for a while after each event answers a
    message that follows soon without it, for a core's worth of CPU while it spins
    (``--spin-us``; 0 turns it off). ``poll`` is the poller's or socket's own poll.
    """

    def __init__(self, poll: Callable[[int], T], spin_s: float) -> None:
        self._poll = poll
        self.spin_s = spin_s
        self._spin_until = 0.0

    def __call__(self, timeout_ms: int) -> T:
        deadline = time.monotonic() + timeout_ms / 1000
        end = min(self._spin_until, deadline)
        while time.monotonic() < end:
            events = self._poll(0)
            if events:
                self._spin_until = time.monotonic() + self.spin_s
                return events
        events = self._poll(max(0, int((deadline - time.monotonic()) * 1000 + 0.999)))
        if events and self.spin_s > 0:
            self._spin_until = time.monotonic() + self.spin_s
        return events
