"""Fault injection under load on real processes: after each fault, exact accounting.

For every fault: requests sent = answered with scores + answered with an error, no
request is answered twice, and every returned score equals the direct model score. The module's pool runs
once alone and once beside a second model on the same broker.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time

import numpy as np
import psutil
import pytest
import zmq

from rerankpool import AsyncClient, Overloaded, WorkerFailed
from rerankpool import protocol as P
from rerankpool.errors import RerankPoolError
from rerankpool.launch import LocalPool
from rerankpool.models import build_tiny_bert

FAST = ["--heartbeat-interval-s", "0.2", "--liveness", "3"]
POISON_ENGINE = "tests.integration.poison_engine:PoisonEngine"


def workload(n: int, seed: int, poison: set[int] = frozenset()) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        docs = [f"doc {i}.{j} " + "river city music " * rng.randint(1, 60) for j in range(rng.randint(1, 10))]
        if i in poison:
            docs[len(docs) // 2] = "this doc is poison"
        out.append((f"query {i}", docs))
    return out


async def send_all(address, requests, fault=None, timeout=60.0, retries=0):
    """Send every request at once; run ``fault(client)`` once work is in flight; gather one result each."""
    async with AsyncClient(address, timeout=timeout, retries=retries) as client:
        tasks = [asyncio.ensure_future(client.score([(q, d) for d in docs])) for q, docs in requests]
        if fault is not None:
            await fault(client)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert client.stray_replies == 0, "a request was answered twice"
    return results


def check_accounting(requests, results, direct, allowed_errors=(), expect_errors=None):
    assert len(results) == len(requests)  # one answer each, by construction of gather
    errors = {i: r for i, r in enumerate(results) if isinstance(r, BaseException)}
    for i, error in errors.items():
        assert isinstance(error, allowed_errors), f"request {i}: {error!r}"
    if expect_errors is not None:
        assert set(errors) == expect_errors, errors
    for i, (query, docs) in enumerate(requests):
        if i not in errors:
            np.testing.assert_allclose(results[i], [direct(query, d) for d in docs], atol=1e-4)
    return errors


async def when_holding_work(client: AsyncClient, pid: int) -> None:
    """Return once the broker says worker ``pid`` holds a batch."""
    while not any(w["pid"] == pid and w["in_flight"] for w in (await client.stats())["workers"]):
        pass


def send_with_a_hung_worker(pool: LocalPool, victim: int, requests) -> list:
    """Send ``requests``; SIGSTOP worker ``victim`` once it holds a batch; SIGCONT it afterwards."""

    async def hang(client):
        await when_holding_work(client, victim)
        os.kill(victim, signal.SIGSTOP)

    try:
        return asyncio.run(send_all(pool.frontend, requests, hang))
    finally:
        os.kill(victim, signal.SIGCONT)


@pytest.fixture(scope="module", params=["one model", "two models"])
def pool(request, tmp_path_factory):
    """tiny-bert's two workers; with "two models", beside a second model's worker on the same broker (the
    faults hit tiny-bert, the default, which the requests name by naming none)."""
    models = ["tiny-bert"]
    if request.param == "two models":
        models.append(f"{build_tiny_bert(tmp_path_factory.mktemp('seed1') / 'tiny-bert-seed1', seed=1)},workers=1")
    with LocalPool(model=models, workers=2, broker_args=["--max-batch", "4", *FAST],
                   worker_args=[*FAST, "--engine", POISON_ENGINE]) as pool:
        yield pool


@pytest.fixture
def two_workers(pool):
    pool.wait_for_workers(pool.total_workers, timeout_s=120)
    return pool


def test_sigstop_hang_moves_work_and_the_worker_rejoins_after_sigcont(two_workers, tiny_direct):
    pool = two_workers
    requests = workload(120, seed=1)
    results = send_with_a_hung_worker(pool, pool.worker_pids("tiny-bert")[0], requests)
    check_accounting(requests, results, tiny_direct, expect_errors=set())
    pong = pool.wait_for_workers(pool.total_workers, timeout_s=30)  # the resumed worker registers again
    assert pong["workers"] == pool.total_workers
    with pool.client() as client:
        assert client.stats()["workers_lost"] >= 1


@pytest.mark.parametrize("mode", ["raise", "exit"])
def test_poison_doc_fails_only_its_request(two_workers, tiny_direct, monkeypatch, mode):
    pool = two_workers
    if mode == "exit":  # workers inherit POISON_MODE from their supervisor's environment
        monkeypatch.setenv("POISON_MODE", "exit")
        pool.worker_proc.terminate()
        pool.worker_proc.wait(30)
        pool.start_workers()
    requests = workload(40, seed=2, poison={7})
    results = asyncio.run(send_all(pool.frontend, requests, timeout=120))
    errors = check_accounting(requests, results, tiny_direct, allowed_errors=(WorkerFailed,), expect_errors={7})
    assert "made the model fail" in str(errors[7])
    assert f"document {len(requests[7][1]) // 2}" in str(errors[7])
    if mode == "exit":
        monkeypatch.delenv("POISON_MODE")
        pool.worker_proc.terminate()
        pool.worker_proc.wait(30)
        pool.start_workers()


def test_overload_is_refused_at_once_and_the_rest_is_served(tiny_direct, tmp_path):
    requests = workload(60, seed=3)
    with LocalPool(model="tiny-bert", workers=1, broker_args=["--max-queued-pairs", "40", *FAST],
                   worker_args=FAST) as pool:
        results = asyncio.run(send_all(pool.frontend, requests))
        with pool.client() as client:
            stats = client.stats()
    errors = check_accounting(requests, results, tiny_direct, allowed_errors=(Overloaded,))
    assert errors, "60 requests at once should overflow a 40-pair queue"
    assert stats["replies_ok"] + stats["replies_error"][P.ErrorCode.OVERLOADED] == len(requests)


def test_broker_restart_clients_retry_and_workers_rejoin(tiny_direct):
    requests = workload(60, seed=4)
    with LocalPool(model="tiny-bert", workers=2, broker_args=FAST, worker_args=FAST) as pool:

        async def restart(client):
            while (await client.stats())["pairs_scored"] == 0:
                pass
            pool.broker_proc.kill()
            pool.broker_proc.wait()
            pool.start_broker()

        results = asyncio.run(send_all(pool.frontend, requests, restart, timeout=5.0, retries=3))
        check_accounting(requests, results, tiny_direct, expect_errors=set())
        assert pool.wait_for_workers(2, timeout_s=30)["workers"] == 2


def test_a_client_that_vanishes_costs_nothing_lasting(two_workers, tiny_direct):
    pool = two_workers
    ctx = zmq.Context.instance()
    gone = ctx.socket(zmq.DEALER)
    gone.setsockopt(zmq.LINGER, 1000)
    gone.connect(pool.frontend)
    for i, (query, docs) in enumerate(workload(30, seed=5)):
        gone.send_multipart(P.encode_request(P.Request(i + 1, P.OP_RERANK, [query], None, docs, timeout_ms=5000)))
    gone.close()  # the client is gone: its replies cannot be delivered
    requests = workload(20, seed=6)
    results = asyncio.run(send_all(pool.frontend, requests))
    check_accounting(requests, results, tiny_direct, expect_errors=set())
    # The vanished client's requests end too (scored or expired; replies dropped): nothing leaks.
    deadline = time.monotonic() + 30
    with pool.client() as client:
        while (stats := client.stats())["requests_in_flight"] and time.monotonic() < deadline:
            pass
    assert stats["requests_in_flight"] == 0 and stats["queue_pairs"] == 0


def test_broker_memory_stays_bounded_across_repeated_faults(two_workers, tiny_direct):
    pool = two_workers
    broker = psutil.Process(pool.broker_proc.pid)
    rss = []
    for round_ in range(4):
        pool.wait_for_workers(pool.total_workers, timeout_s=60)
        requests = workload(80, seed=10 + round_)
        results = send_with_a_hung_worker(pool, pool.worker_pids("tiny-bert")[round_ % 2], requests)
        check_accounting(requests, results, tiny_direct, expect_errors=set())
        rss.append(broker.memory_info().rss / 2**20)
    assert rss[-1] - rss[0] < 20, f"broker RSS grew from {rss[0]:.0f} to {rss[-1]:.0f} MiB"


def test_errors_are_rerankpool_errors():
    assert issubclass(Overloaded, RerankPoolError) and issubclass(WorkerFailed, RerankPoolError)
