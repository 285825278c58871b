"""The blocking client. One request at a time per client; use AsyncClient for many in flight."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Sequence

import zmq
from zmq.utils.monitor import recv_monitor_message

from rerankpool import protocol as P
from rerankpool.client._base import DEFAULT_ADDRESS, GRACE_S, BaseClient, Ranking, Scores, reply_id
from rerankpool.client.brokers import PROBE_AFTER_S, BrokerSet
from rerankpool.sockets import split_addresses
from rerankpool.errors import NoReply
from rerankpool.security.client import ClientSecurity


class Client(BaseClient):
    """Talks to a broker's frontend, or to several (``"tcp://b1:5555,tcp://b2:5555"``). Not thread-safe: give
    each thread its own client.

    ``security`` (``ClientSecurity.from_files(key, server_key)``) turns on CURVE.

    Requests go to the brokers in turn (``client.brokers``). A broker that answered before and
    then goes silent (no answer to a ping within a second) is left at once: the request is sent
    to another (the zguide's Freelance), or, with one broker, to the same one on a fresh socket
    (Lazy Pirate). If no reply comes by the request's deadline (plus a grace second), it is
    resent likewise, up to ``retries`` times a broker. Every call is idempotent, so a resend is
    safe, and the first answer is the one kept.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        timeout: float = 30.0,
        retries: int = 1,
        context: zmq.Context | None = None,
        security: ClientSecurity | None = None,
    ) -> None:
        super().__init__(address, timeout, retries)
        self._security = security
        self._ctx = context or zmq.Context.instance()
        self._brokers = BrokerSet(split_addresses(address))
        self._monitors: list[zmq.Socket] = []
        self._sockets = [self._open(b.address) for b in self._brokers.brokers]

    def _open(self, address: str, i: int | None = None) -> zmq.Socket:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if self._security is not None:
            self._security.apply(sock)
        monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_CONNECT_RETRIED)
        if i is None:
            self._monitors.append(monitor)
        else:
            self._monitors[i].close(0)
            self._monitors[i] = monitor
        sock.connect(address)
        return sock

    def _watch(self, i: int, now: float) -> None:
        """Read what broker ``i``'s socket monitor has said since last time: connections refused or made."""
        monitor = self._monitors[i]
        while monitor.poll(0):
            event = recv_monitor_message(monitor)["event"]
            self._brokers.brokers[i].connection(event == zmq.EVENT_CONNECT_RETRIED, now)

    def close(self) -> None:
        for sock, monitor in zip(self._sockets, self._monitors):
            sock.disable_monitor()
            monitor.close(0)
            sock.close(0)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def rerank(
        self,
        query: str,
        docs: Sequence[str],
        top_k: int | None = None,
        return_documents: bool = False,
        activation: str = "raw",
        timeout: float | None = None,
        model: str | None = None,
        truncation: P.Truncation = P.DEFAULT_TRUNCATION,
        chunking: P.Chunking | None = None,
    ) -> Ranking:
        """Score ``docs`` against ``query``; best first, cut to ``top_k``.

        Scores are the model's raw logits unless ``activation="sigmoid"``. ``model``: one of
        the pool's models (``models()``); None: its default, the first one served.
        ``truncation``: how pairs past the model's window are cut, or refused (``Truncation``);
        ``chunking``: score a document longer than the window by its windows (``Chunking``; None:
        the broker's default), each hit then giving its best window's ``span``.
        """
        timeout = self._timeout(timeout)
        request = self._rerank_request(query, docs, top_k, activation, timeout, model, truncation, chunking)
        header = self._call(request, timeout)
        return self._hits(header, docs, return_documents)

    def score(
        self, pairs: Sequence[tuple[str, str]], activation: str = "raw", timeout: float | None = None,
        model: str | None = None, truncation: P.Truncation = P.DEFAULT_TRUNCATION,
        chunking: P.Chunking | None = None,
    ) -> Scores:
        """Scores of (query, doc) pairs, in input order, by ``model`` (None: the pool's default)."""
        timeout = self._timeout(timeout)
        request = self._score_request(pairs, activation, timeout, model, truncation, chunking)
        return self._scores(self._call(request, timeout))

    def models(self, timeout: float = 5.0) -> list[P.ModelInfo]:
        """The models the pool serves now, the default first, with their live workers."""
        return [P.ModelInfo.from_dict(m) for m in self._call(P.Request(id=0, op=P.OP_MODELS), timeout)["models"]]

    def stats(self, events_since: int | None = None, timeout: float = 5.0, history: bool = False) -> dict[str, Any]:
        """The broker's live counters (and per-batch events after ``events_since``; with ``history``, its
        last minutes one row a second, its hosts' readings, its recent errors and ``recent``: the last 10 s's
        rates, latency percentiles and stage times)."""
        req = P.Request(id=0, op=P.OP_STATS, events_since=events_since, history=history)
        return self._call(req, timeout)["stats"]

    def ping(self, wait_workers: int | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """Broker liveness and its worker count; with ``wait_workers``, answered once that many are live."""
        req = P.Request(id=0, op=P.OP_PING, wait_workers=wait_workers, timeout_ms=int(timeout * 1000))
        return self._call(req, timeout)["pong"]

    def _call(self, req: P.Request, timeout: float) -> dict[str, Any]:
        brokers = self._brokers
        attempts = (self.retries + 1) * len(brokers)
        last = None
        for _ in range(attempts):
            i = brokers.pick(time.monotonic(), avoid=last)
            last, broker, sock = i, brokers.brokers[i], self._sockets[i]
            sock.send_multipart(self._encode(req))
            sent = time.monotonic()
            deadline = sent + timeout + GRACE_S
            while (remaining := deadline - time.monotonic()) > 0:
                if sock.poll(int(1000 * min(remaining, PROBE_AFTER_S / 2)) + 1):
                    header = self._decode(sock.recv_multipart())
                    broker.heard(time.monotonic())
                    rid = reply_id(header)
                    if rid == req.id or (rid is None and not header.get("ok")):
                        return self._check(header)
                    continue  # a pong, or a late reply to an earlier attempt
                now = time.monotonic()
                self._watch(i, now)
                if brokers.none_running(now):
                    raise self._not_running()
                if brokers.down(i, now):
                    brokers.mark_down(i, now)
                    break
                if broker.needs_probe(now, sent):
                    broker.probe_at = now
                    with contextlib.suppress(zmq.Again):  # no connection up to queue it on: that is an answer too
                        sock.send_multipart(self._encode(P.Request(id=0, op=P.OP_PING)), zmq.NOBLOCK)
            with contextlib.suppress(zmq.Again):  # best effort: the broker may be gone
                sock.send_multipart(self._cancel_frames(req.id), zmq.NOBLOCK)
            sock.disable_monitor()
            sock.close(0)  # Lazy Pirate: a fresh socket drops whatever was queued
            self._sockets[i] = self._open(broker.address, i)
        raise NoReply(
            f"no reply from {self.address} within {timeout:.1f} s after {attempts} attempt(s): "
            "is `rerankpool broker` (or `rerankpool up`) running there?"
        )
