"""Per-request truncation through a real pool, over ZeroMQ and HTTP: a 32-token window and longer documents.

Each setting's scores equal the checkpoint run directly with transformers cut the same way;
a request that forbids cutting gets ``too_large`` naming its document and token count, TEI's
413 over HTTP, and the pool keeps serving everything else.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from rerankpool import BadRequest, Truncation
from rerankpool.launch import LocalPool
from tests.conftest import DirectScorer

pytest.importorskip("torch")

WINDOW = 32
QUERY = "where is the old museum"
DOCS = ["a short one", "the river city of berlin runs north past the old museum station and the park " * 3,
        "history bridge park station " * 8, "museum"]


@pytest.fixture(scope="module")
def pool():
    with LocalPool(model="tiny-bert", workers=1, worker_args=["--max-length", str(WINDOW)]) as pool:
        yield pool


@pytest.fixture(scope="module")
def gateway(pool):
    from tests.integration.gateway_process import GatewayProcess

    with GatewayProcess(pool.frontend) as gateway:
        yield gateway


def test_left_truncation_keeps_the_end_of_each_long_document(pool, tiny_model):
    with pool.client() as client:
        right = client.score([(QUERY, d) for d in DOCS])
        left = client.score([(QUERY, d) for d in DOCS], truncation=Truncation(direction="left"))
    for side, got in (("right", right), ("left", left)):
        want = [DirectScorer(tiny_model.path, WINDOW, side)(QUERY, d) for d in DOCS]
        np.testing.assert_allclose(got, want, atol=2e-6, rtol=0)
    assert left[0] == right[0] and left[1] != right[1]  # only the long documents differ


def test_max_tokens_per_doc_scores_each_document_cut_to_its_first_tokens(pool, tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model.path))
    cut = []
    for d in DOCS:
        offsets = tok(d, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        cut.append(d[: offsets[5][1]] if len(offsets) > 6 else d)
    with pool.client() as client:
        got = client.score([(QUERY, d) for d in DOCS], truncation=Truncation(max_tokens_per_doc=6))
    direct = DirectScorer(tiny_model.path, WINDOW)
    np.testing.assert_allclose(got, [direct(QUERY, d) for d in cut], atol=2e-6, rtol=0)


def test_a_request_that_forbids_cutting_gets_too_large_naming_the_document(pool):
    with pool.client() as client:
        with pytest.raises(BadRequest) as err:
            client.rerank(QUERY, DOCS, truncation=Truncation(truncate=False))
        assert err.value.code == "too_large"
        assert "document 1 is too long:" in err.value.message and f"the model's window is {WINDOW}" in err.value.message
        assert len(client.rerank(QUERY, [DOCS[0], DOCS[3]], truncation=Truncation(truncate=False))) == 2
        assert len(client.rerank(QUERY, DOCS)) == len(DOCS)  # the default cuts; the pool kept serving


def test_tei_truncate_false_is_413_and_left_is_honoured(gateway, pool):
    url = gateway.url
    r = httpx.post(url + "/rerank", json={"query": QUERY, "texts": DOCS, "truncate": False})
    assert r.status_code == 413 and r.json()["error_type"] == "Validation" and "document 1" in r.json()["error"]
    left = httpx.post(url + "/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": True,
                                             "truncation_direction": "Left"})
    assert left.status_code == 200
    with pool.client() as client:
        want = client.score([(QUERY, d) for d in DOCS], truncation=Truncation(direction="left"))
    np.testing.assert_allclose([x["score"] for x in sorted(left.json(), key=lambda x: x["index"])], want, atol=1e-6)


def test_cohere_max_tokens_per_doc_cuts_documents(gateway, pool):
    body = {"model": "tiny-bert", "query": QUERY, "documents": DOCS}
    full = httpx.post(gateway.url + "/v2/rerank", json=body).json()["results"]
    cut = httpx.post(gateway.url + "/v2/rerank", json={**body, "max_tokens_per_doc": 6}).json()["results"]
    with pool.client() as client:
        want = client.score([(QUERY, d) for d in DOCS], activation="sigmoid",
                            truncation=Truncation(max_tokens_per_doc=6))
    np.testing.assert_allclose([x["relevance_score"] for x in sorted(cut, key=lambda x: x["index"])], want, atol=1e-6)
    assert {x["index"]: x["relevance_score"] for x in full}[3] == pytest.approx(want[3], abs=1e-6)  # short: unchanged
