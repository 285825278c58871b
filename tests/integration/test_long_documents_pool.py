"""Long documents through a real pool, over ZeroMQ and HTTP: a 32-token window and longer documents.

Truncation: each setting's scores equal the checkpoint run directly with transformers cut
the same way; a request that forbids cutting gets ``too_large`` naming its document and token
count, TEI's 413 over HTTP, and the pool keeps serving everything else. Chunked scoring: each
window's score equals the checkpoint run directly on that window's text, the document's score
is their max, mean or first, and the reply gives the window that counted.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from rerankpool import BadRequest, Chunking, Truncation
from rerankpool.launch import LocalPool
from tests.conftest import DirectScorer

pytest.importorskip("torch")

WINDOW = 32
QUERY = "where is the old museum"
DOCS = ["a short one", "the river city of berlin runs north past the old museum station and the park " * 3,
        "history bridge park station " * 8, "museum"]


@pytest.fixture(scope="module")
def pool():
    with LocalPool(model="tiny-bert", workers=2, worker_args=["--max-length", str(WINDOW)],
                   broker_args=["--max-batch", "3", "--bucket-edges", "512"]) as pool:
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


def windows_of(tiny_model, doc: str, chunking: Chunking) -> list[tuple[int, int]]:
    """The document's windows as the workers plan them, from the checkpoint's own tokenizer."""
    from tokenizers import Tokenizer

    from rerankpool.worker.windows import plan_windows

    tok = Tokenizer.from_file(str(tiny_model.path / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    overhead = len(tok.encode(QUERY, add_special_tokens=False).ids) + 3
    width = min(chunking.window_tokens or WINDOW - overhead, WINDOW - overhead)
    enc = tok.encode(doc, add_special_tokens=False)
    if len(enc.ids) <= width:
        return [(0, len(doc))]
    return [(s, e) for s, e, _ in plan_windows(enc.offsets, enc.word_ids, width, chunking.overlap_tokens,
                                                 chunking.max_windows)]


@pytest.mark.parametrize("chunking", [Chunking("max", overlap_tokens=4), Chunking("mean", overlap_tokens=0),
                                      Chunking("first", window_tokens=10, overlap_tokens=3),
                                      Chunking("max", overlap_tokens=2, max_windows=2)], ids=str)
def test_each_window_scores_as_its_own_text_and_the_document_as_their_aggregate(pool, tiny_model, chunking):
    direct = DirectScorer(tiny_model.path, WINDOW)
    with pool.client() as client:
        hits = client.rerank(QUERY, DOCS, chunking=chunking)
    assert len(windows_of(tiny_model, DOCS[1], chunking)) > 1  # a long document really was split
    for hit in hits:
        doc = DOCS[hit.index]
        spans = windows_of(tiny_model, doc, chunking)
        scores = np.array([direct(QUERY, doc[s:e]) for s, e in spans])
        best = 0 if chunking.aggregate == "first" else int(np.argmax(scores))
        want = scores.mean() if chunking.aggregate == "mean" else scores[best]
        assert hit.score == pytest.approx(want, abs=1e-4), hit
        assert hit.span == spans[best]


def test_the_pool_routes_take_chunking_and_give_spans_and_cohere_v1_chunks(gateway, pool):
    body = {"query": QUERY, "documents": DOCS, "chunking": {"aggregate": "max", "overlap_tokens": 4}}
    r = httpx.post(gateway.url + "/pool/rerank", json=body)
    assert r.status_code == 200, r.text
    with pool.client() as client:
        want = client.rerank(QUERY, DOCS, chunking=Chunking("max", overlap_tokens=4))
    assert [(x["index"], tuple(x["span"])) for x in r.json()["results"]] == [(h.index, h.span) for h in want]
    scored = httpx.post(gateway.url + "/pool/score", json={"pairs": [[QUERY, d] for d in DOCS],
                                                          "chunking": {"aggregate": "first"}}).json()
    assert len(scored["spans"]) == len(DOCS) and scored["spans"][0] == [0, len(DOCS[0])]
    bad = httpx.post(gateway.url + "/pool/rerank",
                     json={**body, "chunking": {"window_tokens": 10, "overlap_tokens": 12}})
    assert bad.status_code == 422 and "overlap_tokens" in bad.json()["error"]["message"]
    v1 = httpx.post(gateway.url + "/v1/rerank", json={"model": "tiny-bert", "query": QUERY, "documents": DOCS,
                                                      "max_chunks_per_doc": 3}).json()
    with pool.client() as client:
        chunked = client.rerank(QUERY, DOCS, activation="sigmoid", chunking=Chunking("max", max_windows=3))
    assert [(x["index"], round(x["relevance_score"], 6)) for x in v1["results"]] == \
        [(h.index, round(h.score, 6)) for h in chunked]
