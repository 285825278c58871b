"""The blocking client. One request at a time per client; use AsyncClient for many in flight."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Sequence

import zmq

from rerankpool import protocol as P
from rerankpool.client._base import DEFAULT_ADDRESS, GRACE_S, BaseClient, Ranking, Scores, reply_id
from rerankpool.errors import NoReply
from rerankpool.security.client import ClientSecurity


class Client(BaseClient):
    """Talks to a broker's frontend. Not thread-safe: give each thread its own client.

    ``security`` (``ClientSecurity.from_files(key, server_key)``) turns on CURVE.

    If no reply comes by the request's deadline (plus a grace second), the client
    assumes the broker was lost, reconnects and resends, up to ``retries`` times
    (the zguide's Lazy Pirate). Every call is idempotent, so a resend is safe.
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
        self._socket = self._open()

    def _open(self) -> zmq.Socket:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if self._security is not None:
            self._security.apply(sock)
        sock.connect(self.address)
        return sock

    def close(self) -> None:
        self._socket.close(0)

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
        last minutes one row a second, its hosts' readings and its recent errors)."""
        req = P.Request(id=0, op=P.OP_STATS, events_since=events_since, history=history)
        return self._call(req, timeout)["stats"]

    def ping(self, wait_workers: int | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """Broker liveness and its worker count; with ``wait_workers``, answered once that many are live."""
        req = P.Request(id=0, op=P.OP_PING, wait_workers=wait_workers, timeout_ms=int(timeout * 1000))
        return self._call(req, timeout)["pong"]

    def _call(self, req: P.Request, timeout: float) -> dict[str, Any]:
        for _ in range(self.retries + 1):
            self._socket.send_multipart(self._encode(req))
            deadline = time.monotonic() + timeout + GRACE_S
            while (remaining := deadline - time.monotonic()) > 0:
                if not self._socket.poll(int(remaining * 1000) + 1):
                    break
                header = self._decode(self._socket.recv_multipart())
                rid = reply_id(header)
                if rid == req.id or (rid is None and not header.get("ok")):
                    return self._check(header)
                # else: a late reply to an earlier attempt; ignore it
            with contextlib.suppress(zmq.Again):  # best effort: the broker may be gone
                self._socket.send_multipart(self._cancel_frames(req.id), zmq.NOBLOCK)
            self._socket.close(0)  # Lazy Pirate: a fresh socket drops whatever was queued
            self._socket = self._open()
        raise NoReply(
            f"no reply from {self.address} within {timeout:.1f} s after {self.retries + 1} attempt(s): "
            "is `rerankpool broker` (or `rerankpool up`) running there?"
        )
