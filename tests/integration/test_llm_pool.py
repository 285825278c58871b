"""An LLM reranker in the pool: real broker and worker processes serve the tiny Qwen3 reranker."""

from __future__ import annotations

import numpy as np
import pytest

from rerankpool.launch import LocalPool
from rerankpool.models.llm import TINY_QWEN3_MODEL
from tests.llm_reference import QwenReference, varied_pairs

pytestmark = pytest.mark.filterwarnings("ignore:`max_length` is ignored")

MAX_LENGTH = 160  # the longer pairs are cut, as the card's code cuts them
# Tiny batches over fine buckets, and big ones in one bucket: scores must not depend on either.
POOLS = {
    "small-batches": dict(broker_args=["--max-batch", "3", "--bucket-edges", "16,24,32,64,128,512"]),
    "big-batches": dict(broker_args=["--max-batch", "64", "--bucket-edges", "512"]),
}


@pytest.fixture(scope="module", params=list(POOLS))
def pool(request):
    with LocalPool(model=TINY_QWEN3_MODEL, workers=2, worker_args=["--max-length", str(MAX_LENGTH)],
                   **POOLS[request.param]) as pool:
        yield pool


@pytest.fixture(scope="module")
def reference():
    from rerankpool.models import resolve_model

    return QwenReference(resolve_model(TINY_QWEN3_MODEL).path, MAX_LENGTH)


def test_scores_equal_the_model_cards_code(pool, reference):
    pairs = varied_pairs(30, seed=11)
    p_yes, log_odds, ids = reference(pairs)
    assert sum(len(i) == MAX_LENGTH for i in ids) >= 3  # some pairs truncated
    with pool.client() as client:
        raw = client.score(pairs)
        probs = client.score(pairs, activation="sigmoid")
        stats = client.stats()
    np.testing.assert_allclose(raw, log_odds, atol=1e-4, rtol=0)
    np.testing.assert_allclose(probs, p_yes, atol=1e-4, rtol=0)
    assert all(w["packed"] is False and w["max_length"] == MAX_LENGTH for w in stats["workers"])
    assert len(stats["workers"]) == 2


def test_rerank_orders_by_the_cards_probability(pool, reference):
    pairs = varied_pairs(12, seed=12)
    query, docs = pairs[0][0], [d for _, d in pairs]
    p_yes, _, _ = reference([(query, d) for d in docs])
    with pool.client() as client:
        hits = client.rerank(query, docs, top_k=5, activation="sigmoid", return_documents=True)
    order = np.argsort(-p_yes, kind="stable")
    assert [h.index for h in hits] == order[:5].tolist()
    assert all(h.document == docs[h.index] for h in hits)
    np.testing.assert_allclose([h.score for h in hits], p_yes[order[:5]], atol=1e-4, rtol=0)
