"""A worker killed with SIGKILL mid-load: its batches move to the others, nothing is lost."""

from __future__ import annotations

import asyncio
import os
import random
import signal

import numpy as np

from rerankpool import AsyncClient
from rerankpool.launch import LocalPool

FAST_HEARTBEATS = ["--heartbeat-interval-s", "0.2", "--liveness", "3"]


def requests_of(seed: int, n: int) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    return [(f"q{i}", [f"doc {i} " + "word " * rng.randint(1, 200) for _ in range(rng.randint(1, 12))])
            for i in range(n)]


def kill_9_under_load(pool: LocalPool, requests, victim: int, holds_work) -> tuple[list, dict]:
    """Send every request, SIGKILL ``victim`` once ``holds_work(workers)`` says, gather; and the stats after."""

    async def run():
        async with AsyncClient(pool.frontend, timeout=90, retries=0) as client:
            tasks = [asyncio.ensure_future(client.score([(q, d) for d in docs])) for q, docs in requests]
            while not holds_work((await client.stats())["workers"]):  # the broker's stats say when
                pass
            os.kill(victim, signal.SIGKILL)
            return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(run())
    with pool.client() as client:
        return results, client.stats()


def assert_nothing_lost(requests, results, stats, tiny_direct) -> None:
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    for (query, docs), scores in zip(requests, results):
        np.testing.assert_allclose(scores, [tiny_direct(query, d) for d in docs], atol=1e-4)
    assert stats["workers_lost"] >= 1
    assert stats["replies_ok"] == len(requests)


def test_kill_9_of_a_worker_under_load_loses_nothing(tiny_direct):
    requests = requests_of(5, 150)
    with LocalPool(model="tiny-bert", workers=2, broker_args=["--max-batch", "4", *FAST_HEARTBEATS],
                   worker_args=FAST_HEARTBEATS) as pool:
        victim = pool.worker_pids()[0]
        results, stats = kill_9_under_load(
            pool, requests, victim, lambda workers: any(w["pid"] == victim and w["in_flight"] for w in workers)
        )
    assert_nothing_lost(requests, results, stats, tiny_direct)


def device_process_pid(pool: LocalPool) -> int:
    """The supervisor's child that listens on the device process's ipc socket."""
    import psutil

    children = psutil.Process(pool.worker_proc.pid).children()  # type: ignore[union-attr]
    (pid,) = [c.pid for c in children if any(str(s.laddr).endswith(".ipc") for s in c.net_connections("unix"))]
    return pid


def test_kill_9_of_the_device_process_under_load_loses_nothing(tiny_direct):
    """Its workers exit (their batches move to the workers that come back) and the supervisor restarts it."""
    requests = requests_of(6, 100)
    with LocalPool(model="tiny-bert", workers=2, broker_args=["--max-batch", "4", *FAST_HEARTBEATS],
                   worker_args=["--packed", "--device-process", *FAST_HEARTBEATS]) as pool:
        victim = device_process_pid(pool)
        results, stats = kill_9_under_load(pool, requests, victim, lambda workers: any(w["in_flight"] for w in workers))
        assert device_process_pid(pool) != victim
    assert_nothing_lost(requests, results, stats, tiny_direct)
