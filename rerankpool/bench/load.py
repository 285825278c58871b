"""Closed-loop load: C concurrent clients, each sending its next request when the last returns.

Only the public client is used, so the numbers are what a user's code would see.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from rerankpool.bench.results import RequestSample
from rerankpool.client import AsyncClient
from rerankpool.errors import RerankPoolError


@dataclass(frozen=True)
class BenchRequest:
    """One client request: rerank (one query) or score (pairs with several queries)."""

    pairs: tuple[tuple[str, str], ...]
    rerank: bool = False

    @property
    def size(self) -> int:
        return len(self.pairs)


def run_load(
    address: str,
    requests: Sequence[BenchRequest],
    concurrency: int,
    timeout_s: float = 120.0,
    on_done: Callable[[int], None] | None = None,
) -> tuple[float, list[RequestSample]]:
    """Send every request with ``concurrency`` clients; returns (wall seconds, one sample per request)."""
    return asyncio.run(_run(address, requests, concurrency, timeout_s, on_done))


async def _run(address, requests, concurrency, timeout_s, on_done):
    queue: asyncio.Queue[BenchRequest] = asyncio.Queue()
    for req in requests:
        queue.put_nowait(req)
    samples: list[RequestSample] = []
    clock = time.perf_counter

    async def client_loop() -> None:
        async with AsyncClient(address, timeout=timeout_s, retries=0) as client:
            while True:
                try:
                    req = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                start = clock()
                error = None
                try:
                    if req.rerank:
                        await client.rerank(req.pairs[0][0], [d for _, d in req.pairs])
                    else:
                        await client.score(list(req.pairs))
                except RerankPoolError as exc:
                    error = str(exc)
                samples.append(RequestSample(start, clock(), req.size, error is None, error))
                if on_done is not None:
                    on_done(req.size)

    start = clock()
    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    return clock() - start, samples
