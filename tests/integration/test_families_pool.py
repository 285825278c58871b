"""Each encoder family served by a real pool (broker and worker processes), against CrossEncoder.predict.

Per family, two batching set-ups that share nothing (tiny batches over fine buckets on 2
workers; the whole request as one batch on 1 worker) must each give CrossEncoder's raw
logits pair by pair within 1e-4, and its default sigmoid scores with ``activation="sigmoid"``.
The ONNX engine is checked on the small-batch set-up (the in-process test covers every
chunking): those pools are marked slow.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from rerankpool.launch import LocalPool
from rerankpool.models import resolve_model
from tests.family_reference import ATOL, FAMILY_MODELS, crossencoder_logits, family_pairs

pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")

SETUPS = {
    "small-batches-2-workers": dict(workers=2, broker_args=["--max-batch", "3", "--bucket-edges",
                                                             "16,24,32,64,128,256,512"]),
    "one-batch-1-worker": dict(workers=1, broker_args=["--max-batch", "64", "--max-batch-tokens", "65536",
                                                        "--bucket-edges", "512"]),
}
POOLS = [pytest.param((model, "torch", setup), id=f"{model}-torch-{setup}")
         for model in FAMILY_MODELS for setup in SETUPS]
POOLS += [pytest.param((model, "onnx", "small-batches-2-workers"), id=f"{model}-onnx", marks=pytest.mark.slow)
          for model in FAMILY_MODELS]


@pytest.fixture(scope="module")
def pairs() -> list[tuple[str, str]]:
    return family_pairs()


@pytest.fixture(scope="module")
def reference(pairs):
    """CrossEncoder's raw logits per tiny family, computed once."""
    cache: dict[str, np.ndarray] = {}

    def logits(model: str) -> np.ndarray:
        if model not in cache:
            cache[model] = crossencoder_logits(resolve_model(model).path, pairs)
        return cache[model]

    return logits


@pytest.fixture(scope="module", params=POOLS)
def pool(request):
    model, engine, setup = request.param
    with LocalPool(model=model, engine=engine, **SETUPS[setup]) as pool:
        yield pool


def test_pool_scores_equal_crossencoder_pair_by_pair(pool, pairs, reference):
    with pool.client(timeout=120) as client:
        got = np.asarray(client.score(pairs))
        stats = client.stats(events_since=0)
    want = reference(pool.model)
    logging.getLogger(__name__).info("%s, %s engine, %d worker(s): max |pool - CrossEncoder| %.2e",
                                     pool.model, pool.engine, pool.workers, np.abs(got - want).max())
    assert np.abs(got - want).max() <= ATOL
    sizes = [e["size"] for e in stats["events"]]
    if pool.workers == 1:
        assert max(sizes) == len(pairs)  # the whole request ran as one batch
    else:
        assert max(sizes) <= 3 and {w["pairs_done"] > 0 for w in stats["workers"]} == {True}


def test_pool_sigmoid_equals_crossencoder_default_activation(pool, pairs, reference):
    """CrossEncoder 6.x applies a sigmoid to a one-label model's logit by default; the pool does on request."""
    with pool.client(timeout=120) as client:
        got = np.asarray(client.score(pairs[:8], activation="sigmoid"))
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-reference(pool.model)[:8])), atol=ATOL, rtol=0)
