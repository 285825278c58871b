"""The asyncio client: the same calls as coroutines, many requests in flight on one socket."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Sequence

import zmq
import zmq.asyncio
from zmq.utils.monitor import recv_monitor_message

from rerankpool import protocol as P
from rerankpool.client._base import DEFAULT_ADDRESS, GRACE_S, BaseClient, Ranking, Scores, reply_id
from rerankpool.client.brokers import PROBE_AFTER_S, BrokerSet
from rerankpool.sockets import split_addresses
from rerankpool.errors import NoReply, ServerError
from rerankpool.security.client import ClientSecurity


class AsyncClient(BaseClient):
    """One DEALER socket a broker (``"tcp://b1:5555,tcp://b2:5555"``: several); a reader task a socket routes
    each reply to the waiting call by id. Brokers are taken in turn, and a call whose broker goes silent
    moves to another at once, as ``Client``'s do (``client.brokers``)."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        timeout: float = 30.0,
        retries: int = 1,
        context: zmq.asyncio.Context | None = None,
        security: ClientSecurity | None = None,
    ) -> None:
        super().__init__(address, timeout, retries)
        self._ctx = context or zmq.asyncio.Context.instance()
        self._brokers = BrokerSet(split_addresses(address))
        self._sockets = []
        self._monitors: list[zmq.Socket] = []  # read without awaiting: a blocking socket on the same context
        watcher = zmq.Context.shadow(self._ctx.underlying)
        for broker in self._brokers.brokers:
            sock = self._ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            if security is not None:
                security.apply(sock)
            endpoint = f"inproc://rerankpool-monitor-{id(sock)}"
            sock.monitor(endpoint, zmq.EVENT_CONNECTED | zmq.EVENT_CONNECT_RETRIED)
            monitor = watcher.socket(zmq.PAIR)
            monitor.setsockopt(zmq.LINGER, 0)
            monitor.connect(endpoint)
            self._monitors.append(monitor)
            sock.connect(broker.address)
            self._sockets.append(sock)
        self._waiting: dict[int, asyncio.Future] = {}
        self._probes: set[int] = set()  # ids of the pings sent to check a silent broker
        self.stray_replies = 0  # replies to no waiting call: late ones after a timeout (or a broker bug)
        self._readers: list[asyncio.Task] = []

    async def close(self) -> None:
        for reader in self._readers:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        for future in self._waiting.values():
            future.cancel()
        for sock, monitor in zip(self._sockets, self._monitors):
            sock.disable_monitor()
            monitor.close(0)
            sock.close(0)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def rerank(
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
        timeout = self._timeout(timeout)
        request = self._rerank_request(query, docs, top_k, activation, timeout, model, truncation, chunking)
        return self._hits(await self._call(request, timeout), docs, return_documents)

    async def score(
        self, pairs: Sequence[tuple[str, str]], activation: str = "raw", timeout: float | None = None,
        model: str | None = None, truncation: P.Truncation = P.DEFAULT_TRUNCATION,
        chunking: P.Chunking | None = None,
    ) -> Scores:
        timeout = self._timeout(timeout)
        request = self._score_request(pairs, activation, timeout, model, truncation, chunking)
        return self._scores(await self._call(request, timeout))

    async def models(self, timeout: float = 5.0) -> list[P.ModelInfo]:
        """The models the pool serves now, the default first, with their live workers."""
        reply = await self._call(P.Request(id=0, op=P.OP_MODELS), timeout)
        return [P.ModelInfo.from_dict(m) for m in reply["models"]]

    async def stats(self, events_since: int | None = None, timeout: float = 5.0,
                    history: bool = False) -> dict[str, Any]:
        request = P.Request(id=0, op=P.OP_STATS, events_since=events_since, history=history)
        return (await self._call(request, timeout))["stats"]

    async def ping(self, wait_workers: int | None = None, timeout: float = 5.0) -> dict[str, Any]:
        req = P.Request(id=0, op=P.OP_PING, wait_workers=wait_workers, timeout_ms=int(timeout * 1000))
        return (await self._call(req, timeout))["pong"]

    async def _read_replies(self, i: int) -> None:
        sock, broker = self._sockets[i], self._brokers.brokers[i]
        while True:
            frames = await sock.recv_multipart()
            broker.heard(time.monotonic())
            try:
                header = self._decode(frames)
            except ServerError:
                continue
            rid = reply_id(header)
            if rid in self._probes:
                self._probes.discard(rid)  # type: ignore[arg-type]
                continue
            future = self._waiting.pop(rid, None)  # type: ignore[arg-type]
            if future is None or future.done():
                self.stray_replies += 1
            else:
                future.set_result(header)

    async def _call(self, req: P.Request, timeout: float) -> dict[str, Any]:
        if not self._readers or any(r.done() for r in self._readers):
            for reader in self._readers:
                reader.cancel()
            self._readers = [asyncio.ensure_future(self._read_replies(i)) for i in range(len(self._sockets))]
        brokers = self._brokers
        attempts = (self.retries + 1) * len(brokers)
        last = None
        for _ in range(attempts):
            i = brokers.pick(time.monotonic(), avoid=last)
            last, sock = i, self._sockets[i]
            frames = self._encode(req)
            future = asyncio.get_running_loop().create_future()
            self._waiting[req.id] = future
            await sock.send_multipart(frames)
            sent = time.monotonic()
            try:
                header = await self._wait(future, i, sent, sent + timeout + GRACE_S)
            except asyncio.CancelledError:
                with contextlib.suppress(zmq.Again):  # tell the broker to drop it, so its pairs cost nothing
                    sock.send_multipart(self._cancel_frames(req.id), zmq.NOBLOCK)
                raise
            finally:
                self._waiting.pop(req.id, None)
            if header is not None:
                return self._check(header)
            with contextlib.suppress(zmq.Again):
                sock.send_multipart(self._cancel_frames(req.id), zmq.NOBLOCK)
            # resend under a new id (to another broker, if one is up); a late reply to this one is dropped
        raise NoReply(
            f"no reply from {self.address} within {timeout:.1f} s after {attempts} attempt(s): "
            "is `rerankpool broker` (or `rerankpool up`) running there?"
        )

    async def _wait(self, future: asyncio.Future, i: int, sent: float, deadline: float) -> dict[str, Any] | None:
        """The reply, or None once the deadline passes or broker ``i`` goes silent (pinging it when quiet)."""
        brokers, broker = self._brokers, self._brokers.brokers[i]
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                return await asyncio.wait_for(asyncio.shield(future), min(remaining, PROBE_AFTER_S / 2))
            except asyncio.TimeoutError:
                pass
            now = time.monotonic()
            monitor = self._monitors[i]
            while monitor.poll(0):  # what the socket's monitor said: connections refused, or made
                event = recv_monitor_message(monitor)["event"]
                broker.connection(event == zmq.EVENT_CONNECT_RETRIED, now)
            if brokers.none_running(now):
                future.cancel()
                raise self._not_running()
            if brokers.down(i, now):
                brokers.mark_down(i, now)
                return None
            if broker.needs_probe(now, sent):
                probe = P.Request(id=0, op=P.OP_PING)
                frames = self._encode(probe)
                self._probes.add(probe.id)
                broker.probe_at = now
                with contextlib.suppress(zmq.Again):
                    self._sockets[i].send_multipart(frames, zmq.NOBLOCK)
        future.cancel()
        return None
