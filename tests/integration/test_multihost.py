"""Workers on other hosts: the broker and two workers in separate network namespaces, over TCP.

Then one worker's link is cut mid-load: its batches must move to the other worker and
every request must still be answered. And with two brokers on two hosts, one broker's link
is cut mid-load: its requests must move to the other broker. Needs root (``ip netns``);
skips, saying why, without it.

The test's client must run on the broker's host, so this file doubles as a script: the
tests run ``python -m tests.integration.test_multihost JOB`` in the broker's namespace,
send it a JSON payload on stdin and read JSON lines back (see ``JOBS`` at the bottom).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import pytest

from rerankpool import AsyncClient, Client, NoReply
from tests.integration.netns import ROOT, Host, Lab, NamespacesUnavailable

FAST_HEARTBEATS = ["--heartbeat-interval-s", "0.2", "--liveness", "3"]
FRONTEND_PORT, BACKEND_PORT = 5555, 5556

pytestmark = pytest.mark.slow


@dataclass
class MultiHostPool:
    lab: Lab
    frontend: str
    stats: dict[str, Any]  # the broker's stats once both workers had registered

    def worker_pid(self, host: Host) -> int:
        """The pid of the registered worker that lives on ``host``."""
        [pid] = [w["pid"] for w in self.stats["workers"] if w["pid"] in self.lab.pids(host)]
        return pid


@contextlib.contextmanager
def made_lab(workers: int, log_dir) -> Iterator[Lab]:
    """A lab of ``workers`` hosts beside the broker's, closed whatever happens; skips where namespaces can't be made."""
    lab = Lab(workers=workers, log_dir=log_dir)
    try:
        try:
            lab.create()
        except NamespacesUnavailable as exc:
            pytest.skip(f"network namespaces unavailable: {exc}")
        yield lab
    finally:
        lab.close()


@pytest.fixture
def pool(tmp_path, tiny_model):  # tiny_model: the model is built into the cache before workers start
    with made_lab(2, tmp_path) as lab:
        b = lab.broker.address
        frontend, backend = f"tcp://{b}:{FRONTEND_PORT}", f"tcp://{b}:{BACKEND_PORT}"
        lab.spawn("broker", lab.broker, "-m", "rerankpool", "broker", "--frontend", frontend, "--backend", backend,
                  "--max-batch", "4", *FAST_HEARTBEATS)
        for i, host in enumerate(lab.workers, 1):
            lab.spawn(f"worker{i}", host, "-m", "rerankpool", "worker", "--connect", backend, "-n", "1",
                      "--model", "tiny-bert", "--threads", "1", *FAST_HEARTBEATS)
        yield MultiHostPool(lab, frontend, wait_for_workers(lab, frontend, len(lab.workers)))


def wait_for_workers(lab: Lab, frontend: str, n: int, timeout_s: float = 120) -> dict[str, Any]:
    """The broker's stats once ``n`` workers are live; raise with the logs if a process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lab.check_alive()
        [reply] = on_broker_host(lab, "ready", frontend=frontend, workers=n, within_s=3)
        if reply["stats"] is not None:
            return reply["stats"]
    raise TimeoutError(f"{n} worker(s) not registered in {timeout_s:.0f} s:\n{lab.logs()}")


def on_broker_host(lab: Lab, job: str, on_message=None, host: Host | None = None, **payload) -> list[dict[str, Any]]:
    """Run ``JOBS[job](**payload)`` in the broker's namespace (or ``host``'s); return its messages.

    Each message is also passed to ``on_message`` as soon as it arrives, while the job runs on.
    """
    with open(lab.log_dir / f"client-{job}.log", "ab") as log:
        proc = subprocess.Popen(lab.command(host or lab.broker, "-m", "tests.integration.test_multihost", job),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT)
    try:
        proc.stdin.write(json.dumps(payload))  # type: ignore[union-attr]
        proc.stdin.close()  # type: ignore[union-attr]
        messages = []
        for line in proc.stdout:  # type: ignore[union-attr]
            messages.append(json.loads(line))
            if on_message is not None:
                on_message(messages[-1])
        assert proc.wait(timeout=30) == 0, f"client job {job!r} failed:\n{lab.log_tail(f'client-{job}')}"
        return messages
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def reference(tiny_direct, pairs: list[tuple[str, str]]) -> list[float]:
    """``tiny_direct`` on each pair, on one thread: on busy shared cores torch's default thread
    pool makes this tiny model 10-30x slower (~100 ms a pair instead of ~3 ms)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [tiny_direct(q, d) for q, d in pairs]
    finally:
        torch.set_num_threads(threads)


# -- the tests --------------------------------------------------------------------------------


def test_workers_in_two_other_namespaces_register_and_score_exactly(pool, tiny_direct):
    pids = [w["pid"] for w in pool.stats["workers"]]
    assert len(pids) == 2 and len(set(pids)) == 2, pool.stats["workers"]
    # Each registered worker is the process in its own namespace: it reached the broker over the veths.
    assert {pool.worker_pid(host) for host in pool.lab.workers} == set(pids)

    rng = random.Random(1)
    pairs = [(f"query {i % 3}", "doc " + "word " * rng.randint(1, 80)) for i in range(40)]
    [reply] = on_broker_host(pool.lab, "score", frontend=pool.frontend, pairs=pairs)
    np.testing.assert_allclose(reply["scores"], reference(tiny_direct, pairs), atol=1e-4, rtol=0)
    # 40 pairs in batches of 4: both hosts took a share.
    assert all(w["batches_done"] >= 1 for w in reply["stats"]["workers"]), reply["stats"]["workers"]


def test_cutting_a_workers_link_under_load_loses_nothing(pool, tiny_direct):
    rng = random.Random(5)
    requests = [(f"q{i}", [f"doc {i} " + "word " * rng.randint(1, 200) for _ in range(rng.randint(1, 12))])
                for i in range(150)]
    cut_host = pool.lab.workers[0]
    victim = pool.worker_pid(cut_host)

    def on_message(message: dict[str, Any]) -> None:
        if "victim_in_flight" in message:  # the victim holds work now: pull its cable
            assert message["victim_in_flight"] > 0, "the load was over before the victim got any work"
            pool.lab.cut(cut_host)

    busy, done = on_broker_host(pool.lab, "load", on_message, frontend=pool.frontend, requests=requests,
                                victim=victim)
    errors = [r for r in done["results"] if isinstance(r, dict)]
    assert not errors, errors[:3]
    for (query, docs), scores in zip(requests, done["results"]):
        np.testing.assert_allclose(scores, reference(tiny_direct, [(query, d) for d in docs]), atol=1e-4, rtol=0)
    stats = done["stats"]
    assert victim not in [w["pid"] for w in stats["workers"]]  # given up: its link is down, it cannot come back
    assert stats["workers_lost"] >= 1
    assert stats["batches_requeued"] >= 1
    assert stats["replies_ok"] == len(requests)
    assert stats["replies_error"] == {}


@pytest.fixture
def two_brokers(tmp_path, tiny_model):
    """Broker A on the bridge host, broker B on host 1, two workers on host 2 serving both; host 3 is the client's."""
    with made_lab(3, tmp_path) as lab:
        brokers = [lab.broker, lab.workers[0]]
        fe = [f"tcp://{h.address}:{FRONTEND_PORT}" for h in brokers]
        be = [f"tcp://{h.address}:{BACKEND_PORT}" for h in brokers]
        for name, host, f, b in zip(("brokerA", "brokerB"), brokers, fe, be):
            lab.spawn(name, host, "-m", "rerankpool", "broker", "--frontend", f.replace(host.address, "0.0.0.0"),
                      "--backend", b.replace(host.address, "0.0.0.0"), "--max-batch", "4", *FAST_HEARTBEATS)
        lab.spawn("workers", lab.workers[1], "-m", "rerankpool", "worker", "--connect", ",".join(be), "-n", "2",
                  "--model", "tiny-bert", "--threads", "1", *FAST_HEARTBEATS)
        for f in fe:
            wait_for_workers(lab, f, 2)
        yield lab, fe


def test_cutting_a_brokers_link_under_load_loses_nothing(two_brokers, tiny_direct):
    """Broker B's host loses its cable mid-load (no RST: its packets just vanish). The client's calls on B
    move to A once B is silent through a ping; every request is answered once, with its exact scores."""
    lab, fe = two_brokers
    rng = random.Random(7)
    requests = [(f"q{i}", [f"doc {i} " + "word " * rng.randint(1, 120) for _ in range(rng.randint(1, 10))])
                for i in range(120)]

    def on_message(message: dict[str, Any]) -> None:
        if "b_in_flight" in message:  # broker B holds requests now: pull its cable
            assert message["b_in_flight"] > 0, "the load was over before broker B held any of it"
            lab.cut(lab.workers[0])

    _, done = on_broker_host(lab, "two_brokers", on_message, host=lab.workers[2], frontends=fe, requests=requests)
    errors = [r for r in done["results"] if isinstance(r, dict)]
    assert not errors, errors[:3]
    for (query, docs), scores in zip(requests, done["results"]):
        np.testing.assert_allclose(scores, reference(tiny_direct, [(query, d) for d in docs]), atol=1e-4, rtol=0)
    assert done["b_found_down"]  # the client judged B down, and its calls went on at A


# -- the client on the broker's host: this file run as a script in the broker's namespace -----


def emit(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


def job_ready(frontend: str, workers: int, within_s: float) -> None:
    """Emit the broker's stats once ``workers`` are live, or ``None`` after ``within_s``."""
    deadline = time.monotonic() + within_s
    with Client(frontend, timeout=2.0, retries=0) as client:
        while time.monotonic() < deadline:
            try:  # the broker holds the answer until n workers are live, or 1 s has passed
                if client.ping(wait_workers=workers, timeout=1.0)["workers"] >= workers:
                    return emit({"stats": client.stats()})
            except NoReply:  # the broker is still starting
                continue
    emit({"stats": None})


def job_score(frontend: str, pairs: list[list[str]]) -> None:
    with Client(frontend, timeout=30.0, retries=0) as client:
        scores = client.score([tuple(p) for p in pairs])
        emit({"scores": scores, "stats": client.stats()})


def job_load(frontend: str, requests: list[list[Any]], victim: int) -> None:
    """All requests in flight at once; say when ``victim`` holds work; then the results, once it is gone."""

    async def run() -> None:
        async with AsyncClient(frontend, timeout=60, retries=0) as client:
            tasks = [asyncio.ensure_future(client.score([(q, d) for d in docs])) for q, docs in requests]
            held = 0
            while not held and not all(t.done() for t in tasks):
                stats = await client.stats()
                held = sum(w["in_flight"] for w in stats["workers"] if w["pid"] == victim)
            emit({"victim_in_flight": held})
            results = await asyncio.gather(*tasks, return_exceptions=True)
            deadline = time.monotonic() + 10  # then wait until the broker has given the victim up
            while True:
                stats = await client.stats()
                if victim not in [w["pid"] for w in stats["workers"]] or time.monotonic() > deadline:
                    break
        emit({"results": [r if isinstance(r, list) else {"error": repr(r)} for r in results], "stats": stats})

    asyncio.run(run())


def job_two_brokers(frontends: list[str], requests: list[list[Any]]) -> None:
    """All requests in flight at once over both brokers; say when broker B holds some; then the results."""

    async def run() -> None:
        async with AsyncClient(",".join(frontends), timeout=60, retries=1) as client, \
                AsyncClient(frontends[1], timeout=2, retries=0) as b:
            tasks = [asyncio.ensure_future(client.score([(q, d) for d in docs])) for q, docs in requests]
            held = 0
            while not held and not all(t.done() for t in tasks):
                stats = await b.stats()
                held = stats["requests_in_flight"]
            emit({"b_in_flight": held})
            results = await asyncio.gather(*tasks, return_exceptions=True)
            b_found_down = client._brokers.brokers[1].downs > 0  # the client's own account of B
        emit({"results": [r if isinstance(r, list) else {"error": repr(r)} for r in results],
              "b_found_down": b_found_down})

    asyncio.run(run())


JOBS = {"ready": job_ready, "score": job_score, "load": job_load, "two_brokers": job_two_brokers}

if __name__ == "__main__":
    JOBS[sys.argv[1]](**json.loads(sys.stdin.read()))
