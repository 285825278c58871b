"""One broker, two models: real broker and worker processes, requests routed by their ``model``.

The two models are tiny BERTs with different seeds (so every pair scores differently under
each), each checked against itself run directly with transformers. A request gets the scores
of the model it names, the default (the first ``--model``) when it names none, and a clear
error for a model never served; kill -9 of one model's worker leaves the other model's
requests untouched; a model whose workers are all gone keeps its requests until a worker
comes back or their deadline passes.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys

import numpy as np
import pytest

from rerankpool import AsyncClient
from rerankpool.errors import NoWorkers, UnknownModel
from rerankpool.launch import LocalPool
from rerankpool.models import build_tiny_bert
from tests.conftest import DirectScorer

pytest.importorskip("torch")

WORDS = "the a river city berlin music station old new year war park capital history museum".split()


def pairs_for(seed: int, n: int = 12) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    words = lambda k: " ".join(rng.choice(WORDS) for _ in range(k))  # noqa: E731
    return [(words(rng.randint(1, 5)), words(rng.randint(1, 40))) for _ in range(n)]


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    """A second tiny BERT (seed 1): same shape and tokenizer as tiny-bert, other weights."""
    return str(build_tiny_bert(tmp_path_factory.mktemp("seed1") / "tiny-bert-seed1", seed=1))


@pytest.fixture(scope="module")
def direct(tiny_direct, other_model):
    return {"tiny-bert": tiny_direct, other_model: DirectScorer(other_model)}


@pytest.fixture(scope="module")
def pool(other_model):
    with LocalPool(model=["tiny-bert", f"{other_model},workers=1"], workers=2, engine="torch",
                   broker_args=["--max-batch", "4", "--bucket-edges", "512"]) as pool:
        yield pool


def test_models_lists_both_with_their_workers_default_first(pool, other_model):
    with pool.client() as client:
        models = client.models()
    assert [(m.name, m.default, m.workers) for m in models] == [("tiny-bert", True, 2), (other_model, False, 1)]
    assert all(m.engines == ["torch on cpu (float32)"] for m in models)
    out = subprocess.run([sys.executable, "-m", "rerankpool", "models", "--connect", pool.frontend],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "tiny-bert (default): 2 live worker(s)" in out.stdout and other_model in out.stdout


def test_each_request_gets_the_scores_of_the_model_it_names(pool, direct, other_model):
    pairs = pairs_for(0)
    with pool.client() as client:
        got = {name: np.asarray(client.score(pairs, model=name)) for name in direct}
        default = np.asarray(client.score(pairs))
    for name, scorer in direct.items():
        np.testing.assert_allclose(got[name], [scorer(q, d) for q, d in pairs], atol=2e-6, rtol=0)
    np.testing.assert_array_equal(default, got["tiny-bert"])  # no model named: the first one served
    assert np.abs(got["tiny-bert"] - got[other_model]).min() > 1e-4  # the two really score differently


def test_interleaved_requests_for_both_models_are_never_mixed(pool, direct):
    """Many requests in flight at once, alternating models, batched by the broker: each keeps its model."""
    names = list(direct)
    work = [(names[i % 2], pairs_for(100 + i, n=3 + i % 5)) for i in range(24)]

    async def run():
        async with AsyncClient(pool.frontend) as client:
            return await asyncio.gather(*(client.score(p, model=name) for name, p in work))

    for (name, pairs), got in zip(work, asyncio.run(run())):
        np.testing.assert_allclose(got, [direct[name](q, d) for q, d in pairs], atol=2e-6, rtol=0)


def test_a_flood_for_one_model_does_not_hold_back_the_other(pool, other_model):
    """2,000 pairs queued for tiny-bert, then one request for the other model: it is answered while most of the
    flood still waits, since only its own model's lane and worker serve it."""
    flood = [[(q, d) for q, d in pairs_for(200 + i, n=50)] for i in range(40)]

    async def run():
        async with AsyncClient(pool.frontend, timeout=120.0) as client:
            waiting = [asyncio.ensure_future(client.score(p, model="tiny-bert")) for p in flood]
            while (await client.stats())["queue_pairs"] < 1000:  # the flood is queued at the broker
                pass
            await client.score(pairs_for(9), model=other_model)
            unanswered = sum(not w.done() for w in waiting)
            await asyncio.gather(*waiting)
            return unanswered

    assert asyncio.run(run()) > len(flood) // 2


def test_a_model_never_served_is_refused_naming_the_served_ones(pool, direct, other_model):
    with pool.client() as client:
        with pytest.raises(UnknownModel, match=r"'nope' is not served.*'tiny-bert'"):
            client.rerank("q", ["d"], model="nope")
        assert len(client.rerank("q", ["d"], model=other_model)) == 1  # still serving


def test_kill_9_of_one_models_worker_leaves_the_other_models_requests_untouched(pool, direct, other_model):
    """The other model's requests, sent while the killed worker's model waits for its restart, all succeed
    with their own scores; the killed model's own request is served once its worker is back."""
    with pool.client(timeout=5.0) as client:
        victim = next(w["pid"] for w in client.stats()["workers"] if w["model"] == other_model)
    os.kill(victim, signal.SIGKILL)
    pairs = pairs_for(7)

    async def run():
        async with AsyncClient(pool.frontend, timeout=60.0) as client:
            others = [client.score(pairs, model="tiny-bert") for _ in range(10)]
            return await asyncio.gather(client.score(pairs, model=other_model), *others)

    killed, *others = asyncio.run(run())
    want = [direct["tiny-bert"](q, d) for q, d in pairs]
    for got in others:
        np.testing.assert_allclose(got, want, atol=2e-6, rtol=0)
    np.testing.assert_allclose(killed, [direct[other_model](q, d) for q, d in pairs], atol=2e-6, rtol=0)
    pool.wait_for_workers(3)


def test_a_models_requests_wait_for_a_worker_then_get_no_workers_at_their_deadline(pool, direct, tmp_path):
    """A third model's only worker process stops (drains and says bye): its model stays known, a request for
    it waits and gets no_workers naming it at its deadline; a worker that comes back in time serves it."""
    third = str(build_tiny_bert(tmp_path / "tiny-bert-seed2", seed=2))
    command = [sys.executable, "-m", "rerankpool", "worker", "--connect", pool.backend, "--model", third]

    def start() -> subprocess.Popen:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pool.wait_for_workers(4)
        return proc

    worker = start()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    with pool.client() as client:
        assert next(m for m in client.models() if m.name == third).workers == 0
        with pytest.raises(NoWorkers, match=f"no worker serves model '{third}'"):
            client.score([("q", "d")], model=third, timeout=1.0)

    async def served_after_restart():
        async with AsyncClient(pool.frontend, timeout=60.0) as client:
            waiting = asyncio.ensure_future(client.score([("q", "d")], model=third))
            while not (await client.stats())["requests_in_flight"]:  # queued before its worker exists
                pass
            worker = await asyncio.to_thread(start)
            return await waiting, worker

    scores, worker = asyncio.run(served_after_restart())
    try:
        np.testing.assert_allclose(scores, [DirectScorer(third)("q", "d")], atol=2e-6, rtol=0)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)


def test_the_http_shapes_route_by_their_model_field(pool, direct, other_model):
    """Cohere's SDK, which always sends a model, gets that model's scores through a real gateway; TEI's body,
    which has no model field, gets the default's; /info lists both."""
    cohere = pytest.importorskip("cohere")
    from tests.integration.gateway_process import GatewayProcess

    query, docs = "city river", ["berlin city", "river bank", "old war park", "music station"]
    with GatewayProcess(pool.frontend) as gateway:
        co = cohere.ClientV2(api_key="unused", base_url=gateway.url)
        for name in (other_model, "tiny-bert"):
            got = {r.index: r.relevance_score for r in co.rerank(model=name, query=query, documents=docs).results}
            want = 1 / (1 + np.exp(-np.array([direct[name](query, d) for d in docs])))
            np.testing.assert_allclose([got[i] for i in range(len(docs))], want, atol=1e-6)
        import httpx

        tei = httpx.post(gateway.url + "/rerank", json={"query": query, "texts": docs, "raw_scores": True}).json()
        np.testing.assert_allclose(sorted(x["score"] for x in tei), sorted(direct["tiny-bert"](query, d) for d in docs),
                                   atol=2e-6)
        info = httpx.get(gateway.url + "/info").json()
        assert [(m["name"], m["default"]) for m in info["models"]][:2] == [("tiny-bert", True), (other_model, False)]
