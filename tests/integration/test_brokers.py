"""Several brokers, one pool: real broker and worker processes, clients that spread and fail over.

Two ``rerankpool broker`` processes; three workers that serve both (``--connect be1,be2``);
clients given both frontends. Killing one broker with SIGKILL under load loses nothing: every
request is answered once, with the scores of the model run directly, as its calls move to the
live broker at once. A broker that comes back takes load again, and one that was never
running is passed over.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from rerankpool import AsyncClient, Client
from rerankpool.launch import wait_for_workers
from rerankpool.worker.loop import lease

pytest.importorskip("torch")

FAST = ["--heartbeat-interval-s", "0.2", "--liveness", "3"]
WORDS = "the river city of berlin runs north past old museum station park bridge history".split()


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rerankpool", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)


class Pool:
    """Two brokers and three workers serving both, on ipc:// endpoints in ``folder``."""

    def __init__(self, folder) -> None:
        self.fe = [f"ipc://{folder}/fe{i}" for i in (1, 2)]
        self.be = [f"ipc://{folder}/be{i}" for i in (1, 2)]
        self.brokers = [self.start_broker(i) for i in (0, 1)]
        self.workers = spawn("worker", "--connect", ",".join(self.be), "-n", "3", "--model", "tiny-bert", *FAST)
        for i in (0, 1):
            self.wait_for_workers(i, 3)

    def start_broker(self, i: int) -> subprocess.Popen:
        return spawn("broker", "--frontend", self.fe[i], "--backend", self.be[i], *FAST)

    def wait_for_workers(self, i: int, n: int) -> None:
        assert wait_for_workers(self.fe[i], n, 120.0)["workers"] >= n

    def stop(self) -> None:
        for proc in [self.workers, *self.brokers]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [self.workers, *self.brokers]:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    pool = Pool(tmp_path_factory.mktemp("brokers"))
    yield pool
    pool.stop()


def requests(n: int, seed: int) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    return [(" ".join(rng.sample(WORDS, 3)), [" ".join(rng.sample(WORDS, rng.randint(2, 12))) for _ in range(6)])
            for _ in range(n)]


def test_a_worker_leases_its_capacity_among_its_brokers():
    assert lease(2, 1) == [2] and lease(2, 2) == [1, 1] and lease(5, 2) == [3, 2] and sum(lease(7, 3)) == 7
    assert lease(2, 3) == [1, 1, 1]  # more brokers than capacity: one batch a broker at the most


def test_workers_serve_both_brokers_and_clients_spread_over_them(pool, tiny_direct):
    with Client(",".join(pool.fe)) as client:
        for query, docs in requests(6, seed=1):
            hits = client.rerank(query, docs)
            np.testing.assert_allclose(sorted(h.score for h in hits), sorted(tiny_direct(query, d) for d in docs),
                                       atol=2e-6)
    for fe in pool.fe:
        with Client(fe) as one:
            stats = one.stats()
        assert len(stats["workers"]) == 3 and all(w["capacity"] == 2 for w in stats["workers"])  # 2 a broker
        assert stats["pairs_scored"] > 0  # each broker took a share


def test_kill_9_of_a_broker_under_load_loses_nothing_and_it_takes_load_again_when_back(pool, tiny_direct):
    work = requests(120, seed=2)
    killed = asyncio.Event()

    async def run():
        async with AsyncClient(",".join(pool.fe), timeout=30.0) as client:
            async def one(k: int, query: str, docs: list[str]):
                if k == 30:
                    pool.brokers[0].send_signal(signal.SIGKILL)  # mid-load
                    killed.set()
                start = time.monotonic()
                return await client.score([(query, d) for d in docs]), time.monotonic() - start

            gate = asyncio.Semaphore(8)

            async def gated(k, query, docs):
                async with gate:
                    return await one(k, query, docs)

            return await asyncio.gather(*(gated(k, q, d) for k, (q, d) in enumerate(work)))

    results = asyncio.run(run())
    assert killed.is_set() and pool.brokers[0].wait(timeout=10) == -signal.SIGKILL
    for (query, docs), (scores, _) in zip(work, results):  # every request once, with its own scores
        np.testing.assert_allclose(scores, [tiny_direct(query, d) for d in docs], atol=2e-6)
    pool.brokers[0] = pool.start_broker(0)  # back: the workers register with it again
    pool.wait_for_workers(0, 3)
    with Client(pool.fe[0]) as client:
        before = client.stats()["pairs_scored"]
    with Client(",".join(pool.fe)) as client:
        for query, docs in requests(8, seed=3):
            client.score([(query, d) for d in docs])
    with Client(pool.fe[0]) as client:
        assert client.stats()["pairs_scored"] > before  # it takes load again


def test_a_broker_that_never_ran_is_passed_over(pool, tmp_path, tiny_direct):
    dead = f"ipc://{tmp_path}/nobody"
    with Client(f"{dead},{pool.fe[1]}", timeout=30.0) as client:
        for query, docs in requests(4, seed=4):
            scores = client.score([(query, d) for d in docs])
            np.testing.assert_allclose(scores, [tiny_direct(query, d) for d in docs], atol=2e-6)


def test_the_http_gateway_fails_over_between_brokers(pool, tiny_direct):
    import httpx

    from tests.integration.gateway_process import GatewayProcess

    query, docs = "old museum", ["the old museum by the river", "a park", "north station"]
    want = sorted(tiny_direct(query, d) for d in docs)
    with GatewayProcess(",".join(pool.fe)) as gateway:
        with httpx.Client(base_url=gateway.url, timeout=30.0) as http:
            body = {"query": query, "documents": docs}
            assert http.post("/pool/rerank", json=body).status_code == 200
            pool.brokers[1].send_signal(signal.SIGKILL)
            for _ in range(10):  # every one answered, by the broker left
                r = http.post("/pool/rerank", json=body)
                assert r.status_code == 200, r.text
                np.testing.assert_allclose(sorted(x["score"] for x in r.json()["results"]), want, atol=2e-6)
    pool.brokers[1].wait(timeout=10)
    pool.brokers[1] = pool.start_broker(1)
    pool.wait_for_workers(1, 3)
