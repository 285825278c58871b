"""The asyncio client: the same calls as coroutines, many requests in flight on one socket."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Sequence

import zmq
import zmq.asyncio

from rerankpool import protocol as P
from rerankpool.client._base import DEFAULT_ADDRESS, GRACE_S, BaseClient, Ranking, Scores, reply_id
from rerankpool.errors import NoReply, ServerError
from rerankpool.security.client import ClientSecurity


class AsyncClient(BaseClient):
    """One DEALER socket; a reader task routes each reply to the waiting call by id."""

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
        self._socket = self._ctx.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        if security is not None:
            security.apply(self._socket)
        self._socket.connect(address)
        self._waiting: dict[int, asyncio.Future] = {}
        self.stray_replies = 0  # replies to no waiting call: late ones after a timeout (or a broker bug)
        self._reader: asyncio.Task | None = None

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for future in self._waiting.values():
            future.cancel()
        self._socket.close(0)

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

    async def _read_replies(self) -> None:
        while True:
            frames = await self._socket.recv_multipart()
            try:
                header = self._decode(frames)
            except ServerError:
                continue
            future = self._waiting.pop(reply_id(header), None)  # type: ignore[arg-type]
            if future is None or future.done():
                self.stray_replies += 1
            else:
                future.set_result(header)

    async def _call(self, req: P.Request, timeout: float) -> dict[str, Any]:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.ensure_future(self._read_replies())
        for _ in range(self.retries + 1):
            frames = self._encode(req)
            future = asyncio.get_running_loop().create_future()
            self._waiting[req.id] = future
            await self._socket.send_multipart(frames)
            try:
                header = await asyncio.wait_for(future, timeout + GRACE_S)
            except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
                # Tell the broker to drop it (best effort), so its pairs cost no compute.
                with contextlib.suppress(zmq.Again):
                    self._socket.send_multipart(self._cancel_frames(req.id), zmq.NOBLOCK)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue  # resend under a new id; a late reply to this one is dropped
            finally:
                self._waiting.pop(req.id, None)
            return self._check(header)
        raise NoReply(
            f"no reply from {self.address} within {timeout:.1f} s after {self.retries + 1} attempt(s): "
            "is `rerankpool broker` (or `rerankpool up`) running there?"
        )
