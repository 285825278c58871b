"""Which broker a client sends to, and when one is down: pure logic, after the zguide's Freelance pattern.

A client may be given several brokers (``"tcp://b1:5555,tcp://b2:5555"``). It spreads its
requests over those up, in turn. While a request waits, silence from its broker is
checked: after ``PROBE_AFTER_S`` without a frame from it the client sends it a ping (a broker
answers pings at once, however busy), and a broker that then stays silent another
``PROBE_AFTER_S`` is down: the request moves to another broker at once instead of waiting out
its deadline, and the down broker is tried again after ``RETRY_DOWN_S``, twice as long each time
it is found down again. Flowing replies are
heartbeats enough, so probes cost nothing under load.

A broker never heard from is not judged down by silence alone when it is the only one (it may
still be starting: ``rerankpool up &`` then a client): the request waits for it until its
deadline, as before. Among several brokers, one that has never answered is judged down by its
silence as soon as another has answered. An address that refuses connections for ``REFUSED_S``
(nothing listens there: the socket's monitor says so) is down in any case, and a client whose
brokers have never answered and all refuse says so within about a second.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

PROBE_AFTER_S = 0.5
RETRY_DOWN_S = 1.0  # doubled each time a broker is found down again, up to RETRY_DOWN_MAX_S
RETRY_DOWN_MAX_S = 30.0
REFUSED_S = 1.0  # a broker whose address refuses connections this long is not running there


@dataclass
class BrokerState:
    """What a client knows of one broker's liveness."""

    address: str
    heard_at: float = -math.inf  # the last frame from it
    probe_at: float | None = None  # a ping sent, with nothing heard since
    down_until: float = -math.inf
    ever_heard: bool = False
    refused_since: float | None = None  # connections refused since then, none accepted
    downs: int = 0  # times found down in a row

    def heard(self, now: float) -> None:
        self.heard_at, self.probe_at, self.ever_heard, self.down_until, self.downs = now, None, True, -math.inf, 0

    def connection(self, refused: bool, now: float) -> None:
        """What the socket's monitor said: a connection refused (nothing listens), or made."""
        if not refused:
            self.refused_since = None
        elif self.refused_since is None:
            self.refused_since = now

    def refused(self, now: float) -> bool:
        return self.refused_since is not None and now - self.refused_since >= REFUSED_S

    def needs_probe(self, now: float, waiting_since: float) -> bool:
        """A request has waited ``PROBE_AFTER_S`` on this broker with no frame from it, and no ping is out."""
        return self.probe_at is None and now - max(self.heard_at, waiting_since) >= PROBE_AFTER_S

    def silent(self, now: float) -> bool:
        """Its ping went unanswered for ``PROBE_AFTER_S``."""
        return self.probe_at is not None and now - self.probe_at >= PROBE_AFTER_S


class BrokerSet:
    """The client's brokers, taken in turn among those up (answering ones first)."""

    def __init__(self, addresses: list[str]) -> None:
        self.brokers = [BrokerState(a) for a in addresses]
        self._turn = itertools.count()

    def __len__(self) -> int:
        return len(self.brokers)

    def pick(self, now: float, avoid: int | None = None) -> int:
        """The next broker to send to, in turn among those up (``avoid``: the one a request just left), else
        the one down the longest."""
        n = len(self.brokers)
        start = next(self._turn) % n
        up = [i for i in ((start + k) % n for k in range(n)) if self.brokers[i].down_until <= now and i != avoid]
        if up:
            return up[0]
        return min(range(n), key=lambda i: (i == avoid and n > 1, self.brokers[i].down_until))

    def down(self, i: int, now: float) -> bool:
        """Whether a request waiting on broker ``i`` should move: it was heard before and went silent, or
        another broker answers while this one never has."""
        broker = self.brokers[i]
        if broker.refused(now):
            return True
        if not broker.silent(now):
            return False
        return broker.ever_heard or any(b.ever_heard and b.down_until <= now for b in self.brokers)

    def none_running(self, now: float) -> bool:
        """Every address refuses connections and none has ever answered: no broker runs at any of them (one that
        answered before and refuses now may be restarting: its requests are resent until their deadline)."""
        return all(b.refused(now) and not b.ever_heard for b in self.brokers)

    def mark_down(self, i: int, now: float) -> None:
        broker = self.brokers[i]
        broker.down_until, broker.probe_at = now + min(RETRY_DOWN_MAX_S, RETRY_DOWN_S * 2 ** broker.downs), None
        broker.downs += 1
