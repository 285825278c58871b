"""Closed-loop load: C concurrent clients, each sending its next request when the last returns.

Only public interfaces are used, so the numbers are what a user's code would see: the
ZeroMQ ``AsyncClient``, or HTTP (an ``HttpTarget``: the pool's gateway, or another
server such as Infinity, each client on its own keep-alive connection, through a lean
client so that the load generator is not what limits the server). One asyncio
process tops out near 15-20k pairs/s over ZeroMQ (measured on an H100 host, 20-pair
requests), and lower over HTTP, below what a GPU pool serves, so the clients can be
spread over several processes: each runs its share of the clients on its share of the
requests, they start together, and the samples are merged (``time.monotonic`` is one
clock for all processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import queue
import socket
import time
import urllib.parse
from dataclasses import dataclass
from typing import Callable, Sequence

from rerankpool.bench.results import RequestSample
from rerankpool.client import AsyncClient
from rerankpool.errors import RerankPoolError
from rerankpool.heap import freeze_startup_heap, frozen_heap

PROGRESS_EVERY = 64  # requests between progress messages from a load process


@dataclass(frozen=True)
class BenchRequest:
    """One client request: rerank (one query) or score (pairs with several queries)."""

    pairs: tuple[tuple[str, str], ...]
    rerank: bool = False
    model: str | None = None  # which of the pool's models (None: its default)

    @property
    def size(self) -> int:
        return len(self.pairs)


@dataclass(frozen=True)
class HttpTarget:
    """An HTTP server to load: ``shape`` "pool" is a rerankpool gateway (``/pool/rerank``, ``/pool/score``:
    the same work as the ZeroMQ client), "infinity" is Infinity's ``/rerank`` (rerank requests only)."""

    url: str
    shape: str = "pool"
    api_key: str | None = None  # sent as a Bearer token

    def request(self, req: BenchRequest) -> tuple[str, dict]:
        """The path and JSON body of one request; scores are raw logits on every server."""
        query, docs = req.pairs[0][0], [d for _, d in req.pairs]
        if self.shape == "pool":
            model = {"model": req.model} if req.model else {}
            if req.rerank:
                return "/pool/rerank", {"query": query, "documents": docs, **model}
            return "/pool/score", {"pairs": [list(p) for p in req.pairs], **model}
        if self.shape == "infinity":
            if not req.rerank:
                raise ValueError("Infinity's /rerank takes one query per request: use --dataset squad-rerank")
            return "/rerank", {"query": query, "documents": docs, "raw_scores": True}
        raise ValueError(f"unknown HTTP shape {self.shape!r}: pool or infinity")


def load_processes(concurrency: int, cores: int | None = None) -> int:
    """Processes for the load generator: one per 16 clients, at most 4 and a quarter of the cores."""
    import os

    cores = cores or os.cpu_count() or 1
    return max(1, min(4, concurrency // 16, cores // 4))


def run_load(
    address: str | HttpTarget | dict[str, str],
    requests: Sequence[BenchRequest],
    concurrency: int,
    timeout_s: float = 120.0,
    on_done: Callable[[int], None] | None = None,
    processes: int = 1,
) -> tuple[float, list[RequestSample]]:
    """Send every request with ``concurrency`` clients; returns (wall seconds, one sample per request).

    ``address`` as a dict sends each request to the broker of its model (one pool per model)."""
    processes = max(1, min(processes, concurrency, len(requests)))
    if processes == 1:
        with frozen_heap():  # the workload is built: no pause of the clients to walk it
            return asyncio.run(_run(address, requests, concurrency, timeout_s, on_done))
    return _run_processes(address, requests, concurrency, timeout_s, on_done, processes)


async def _run(address, requests, concurrency, timeout_s, on_done):
    queue_: asyncio.Queue[BenchRequest] = asyncio.Queue()
    for req in requests:
        queue_.put_nowait(req)
    samples: list[RequestSample] = []
    clock = time.monotonic

    async def client_loop() -> None:
        async with _sender(address, timeout_s) as send:
            while True:
                try:
                    req = queue_.get_nowait()
                except asyncio.QueueEmpty:
                    return
                start = clock()
                error = await send(req)
                samples.append(RequestSample(start, clock(), req.size, error is None, error, req.model))
                if on_done is not None:
                    on_done(req.size)

    start = clock()
    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    return clock() - start, samples


@contextlib.asynccontextmanager
async def _sender(address: str | HttpTarget | dict[str, str], timeout_s: float):
    """One client's connection: a coroutine that sends a request and returns its error (None if scored).

    With a dict of model -> broker address (one pool per model), one connection to each, and each request
    to its model's broker, which serves that one model."""
    if isinstance(address, HttpTarget):
        async with _KeepAlive(address, timeout_s) as http:

            async def send_http(req: BenchRequest) -> str | None:
                path, body = address.request(req)
                try:
                    status, reply = await http.post(path, body)
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as exc:
                    return f"{type(exc).__name__}: {exc}"
                return None if status == 200 else f"HTTP {status}: {reply[:200].decode(errors='replace')}"

            yield send_http
        return
    routes = address if isinstance(address, dict) else {None: address}
    async with contextlib.AsyncExitStack() as stack:
        clients = {model: await stack.enter_async_context(AsyncClient(addr, timeout=timeout_s, retries=0))
                   for model, addr in routes.items()}

        async def send_zmq(req: BenchRequest) -> str | None:
            if isinstance(address, dict):  # that model's own pool: it is its broker's default
                client, model = clients[req.model], None
            else:
                client, model = clients[None], req.model
            try:
                if req.rerank:
                    await client.rerank(req.pairs[0][0], [d for _, d in req.pairs], model=model)
                else:
                    await client.score(list(req.pairs), model=model)
            except RerankPoolError as exc:
                return str(exc)
            return None

        yield send_zmq


class _KeepAlive:
    """A lean HTTP/1.1 client on one keep-alive connection: JSON POSTs, replies with a Content-Length.

    The load generator must not be what limits an HTTP server: a general client (httpx) spends
    more CPU per request than the gateway does, so this one does only what the bench needs.
    """

    def __init__(self, target: HttpTarget, timeout_s: float) -> None:
        url = urllib.parse.urlsplit(target.url)
        self.host, self.port, self.timeout_s = url.hostname or "127.0.0.1", url.port or 80, timeout_s
        auth = f"Authorization: Bearer {target.api_key}\r\n" if target.api_key else ""
        self.head = f"Host: {url.netloc}\r\nContent-Type: application/json\r\n{auth}"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> "_KeepAlive":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._close()

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def post(self, path: str, body: dict) -> tuple[int, bytes]:
        try:
            return await asyncio.wait_for(self._post(path, _dumps(body)), self.timeout_s)
        except BaseException:
            self._close()  # a broken or abandoned exchange: the next request opens a fresh connection
            raise

    async def _post(self, path: str, payload: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert self.reader is not None
        self.writer.write(f"POST {path} HTTP/1.1\r\n{self.head}Content-Length: {len(payload)}\r\n\r\n".encode()
                          + payload)
        status = int((await self.reader.readline()).split(b" ", 2)[1])
        length, close = None, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if length is None:
            raise ValueError("a reply without Content-Length: this client reads only those")
        reply = await self.reader.readexactly(length)
        if close:
            self._close()
        return status, reply


def _dumps(body: dict) -> bytes:
    try:
        import orjson

        return orjson.dumps(body)
    except ImportError:
        return json.dumps(body).encode()


def _load_process(address, requests, concurrency, timeout_s, ready, go, out) -> None:
    """One load process: its clients, its requests; progress and samples go back on ``out``."""
    done = {"requests": 0, "pairs": 0}

    def progress(pairs: int) -> None:
        done["requests"] += 1
        done["pairs"] += pairs
        if done["requests"] % PROGRESS_EVERY == 0:
            out.put(("progress", done["pairs"]))
            done["pairs"] = 0

    freeze_startup_heap()
    ready.release()
    go.wait()
    _, samples = asyncio.run(_run(address, requests, concurrency, timeout_s, progress))
    out.put(("progress", done["pairs"]))
    out.put(("samples", samples))


def _run_processes(address, requests, concurrency, timeout_s, on_done, processes):
    ctx = mp.get_context("spawn")
    ready, go, out = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    shares = [list(requests[i::processes]) for i in range(processes)]
    clients = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    procs = [
        ctx.Process(target=_load_process, args=(address, share, c, timeout_s, ready, go, out), daemon=True)
        for share, c in zip(shares, clients)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        if not ready.acquire(timeout=60):
            raise RuntimeError("a load process did not start within 60 s")
    start = time.monotonic()
    go.set()
    samples: list[RequestSample] = []
    finished = 0
    while finished < len(procs):
        try:
            kind, value = out.get(timeout=timeout_s + 60)
        except queue.Empty:
            raise RuntimeError("a load process went silent; see its traceback above") from None
        if kind == "progress" and on_done is not None:
            on_done(value)
        elif kind == "samples":
            samples += value
            finished += 1
    for proc in procs:
        proc.join(timeout=10)
    end = max((s.end_s for s in samples), default=start)
    return end - start, samples
