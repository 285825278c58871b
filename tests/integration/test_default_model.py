"""The offline default model through the pool: exact scores and real ranking quality on SQuAD."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from rerankpool import AsyncClient
from rerankpool.bench.datasets import load_squad, mrr_at_k, rerank_workload
from rerankpool.launch import LocalPool
from rerankpool.models import DEFAULT_MODEL, resolve_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workload():
    return rerank_workload(load_squad(), n_queries=50, n_candidates=20, seed=0)


@pytest.fixture(scope="module")
def pool():
    with LocalPool(model=DEFAULT_MODEL, workers=2) as pool:
        yield pool


def test_default_model_ranks_squad_gold_passages_first():
    """MRR@10 through the pool, on the model's shipped INT8 file (ONNX Runtime): 1000 pairs in seconds.

    The torch engine's scores equal the checkpoint's (next test), and INT8 ranks as fp32
    does (tests/unit/test_engines_parity.py), so this covers the torch path's ranking too.
    """
    workload = rerank_workload(load_squad(), n_queries=50, n_candidates=20, seed=0)
    with LocalPool(model=DEFAULT_MODEL, workers=2, engine="onnx", dtype="int8") as pool:

        async def run():
            async with AsyncClient(pool.frontend, timeout=300) as client:
                return await asyncio.gather(*(client.score([(it.query, d) for d in it.docs]) for it in workload))

        scores = asyncio.run(run())
    mrr = mrr_at_k(scores, [it.gold_index for it in workload], k=10)
    assert mrr >= 0.9, f"MRR@10 = {mrr:.3f} on 50 SQuAD dev queries"


def test_default_model_scores_equal_the_checkpoint_run_directly(pool, workload):
    from tests.conftest import DirectScorer

    direct = DirectScorer(resolve_model(DEFAULT_MODEL).path)
    pairs = [(it.query, it.docs[j]) for it in workload[:4] for j in range(4)]
    with pool.client(timeout=120) as client:
        got = client.score(pairs)
    np.testing.assert_allclose(got, [direct(q, d) for q, d in pairs], atol=1e-4, rtol=0)
