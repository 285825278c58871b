"""Long documents in the workers' tokenizer: per-request truncation, and the windows of chunked scoring.

A request's ``Truncation`` reaches the tokenizer per pair. Whatever the settings, each pair's
ids are exactly what a ``tokenizers`` pipeline configured that way gives (right or left,
longest first), a document cut to ``max_tokens_per_doc`` is the text of its first (or last)
tokens, and a pair too long for a request that forbids cutting is named with its length.
A document to split leaves the chunks and gets windows whose texts, paired with the query,
fit the model's window, for every family's tokenizer and an LLM reranker's prompt.
"""

from __future__ import annotations

import numpy as np
import pytest

from rerankpool.models import resolve_model
from rerankpool.protocol import DEFAULT_TRUNCATION, Chunking, Truncation
from rerankpool.worker.policy import ChunkPolicy
from rerankpool.worker.tokenize import PairTokenizer, load_pair_tokenizer

WINDOW = 24
WORDS = "the river city of berlin runs north past old museum station park bridge history".split()


def doc(n: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(WORDS, n))


PAIRS = [("where is the museum", doc(n, i)) for i, n in enumerate((3, 8, 15, 30, 60, 2))]


@pytest.fixture(scope="module", params=["tiny-bert", "tiny-xlm-roberta"])
def tokenizer_json(request):
    return resolve_model(request.param).path / "tokenizer.json"


@pytest.fixture(scope="module")
def tokenizer(tokenizer_json):
    return PairTokenizer(tokenizer_json, WINDOW)


def encode(tok: PairTokenizer, truncations) -> tuple[list[list[int]], dict[int, str]]:
    """Each pair's ids in input order, and the refused pairs."""
    queries = sorted({q for q, _ in PAIRS})
    batch = tok.encode(queries, [queries.index(q) for q, _ in PAIRS], [d for _, d in PAIRS],
                       ChunkPolicy(overhead_tokens=10**9), truncations)
    (chunk,) = batch.chunks
    rows = {int(r): chunk.input_ids[i][chunk.attention_mask[i] == 1].tolist() for i, r in enumerate(chunk.rows)}
    return [rows[i] for i in range(len(PAIRS))], batch.refused


def reference(tok: PairTokenizer, direction: str, docs=None) -> list[list[int]]:
    """A ``tokenizers`` pipeline cut that way: what TEI runs."""
    from tokenizers import Tokenizer

    ref = Tokenizer.from_str(tok._tok.to_str())
    ref.enable_truncation(WINDOW, strategy="longest_first", direction=direction)
    return [e.ids for e in ref.encode_batch([(q, d) for (q, _), d in zip(PAIRS, docs or [d for _, d in PAIRS])])]


@pytest.mark.parametrize("direction", ["right", "left"])
def test_each_direction_cuts_as_tokenizers_does(tokenizer, direction):
    got, refused = encode(tokenizer, [Truncation(True, direction)] * len(PAIRS))
    assert got == reference(tokenizer, direction) and not refused
    assert max(map(len, got)) == WINDOW  # some pairs were cut
    default, _ = encode(tokenizer, None)
    assert default == reference(tokenizer, "right")  # the fast path agrees


def test_a_pair_too_long_is_refused_only_for_requests_that_forbid_cutting(tokenizer):
    settings = [Truncation(False) if i % 2 else DEFAULT_TRUNCATION for i in range(len(PAIRS))]
    got, refused = encode(tokenizer, settings)
    full = [len(ids) for ids in reference(tokenizer, "right")]
    from tokenizers import Tokenizer

    plain = Tokenizer.from_str(tokenizer._tok.to_str())
    plain.no_truncation()
    lengths = [len(e.ids) for e in plain.encode_batch(PAIRS)]
    want = {i for i in range(len(PAIRS)) if i % 2 and lengths[i] > WINDOW}
    assert set(refused) == want and want  # the odd pairs past the window, and only those
    for i in want:
        assert refused[i] == f"{lengths[i]} tokens with its query; the model's window is {WINDOW}"
    assert [len(ids) for ids in got] == full  # refused pairs are still cut, so their batch runs


def test_a_server_that_refuses_by_default_lets_a_request_ask_for_cutting(tokenizer_json):
    strict = PairTokenizer(tokenizer_json, WINDOW, truncate=False)
    _, refused = encode(strict, None)
    assert refused
    _, refused = encode(strict, [Truncation(True)] * len(PAIRS))
    assert not refused


@pytest.mark.parametrize("direction", ["right", "left"])
def test_max_tokens_per_doc_cuts_each_document_to_the_text_of_its_tokens(tokenizer, direction):
    from tokenizers import Tokenizer

    plain = Tokenizer.from_str(tokenizer._tok.to_str())
    plain.no_truncation()
    cut_docs = []
    for _, d in PAIRS:
        offsets = plain.encode(d, add_special_tokens=False).offsets
        cut_docs.append(d if len(offsets) <= 5 else d[: offsets[4][1]] if direction == "right" else d[offsets[-5][0]:])
    got, _ = encode(tokenizer, [Truncation(True, direction, max_tokens_per_doc=5)] * len(PAIRS))
    assert got == reference(tokenizer, direction, cut_docs)
    assert any(c != d for c, (_, d) in zip(cut_docs, PAIRS))


@pytest.mark.parametrize("name, max_length", [("tiny-bert", 48), ("tiny-xlm-roberta", 48), ("tiny-electra", 64),
                                               ("tiny-qwen3-reranker", 160)])
@pytest.mark.parametrize("chunking", [Chunking(overlap_tokens=8), Chunking(window_tokens=12, overlap_tokens=3),
                                      Chunking(overlap_tokens=0, max_windows=3)], ids=str)
def test_a_long_document_gets_windows_that_fit_and_leaves_the_chunks(name, max_length, chunking):
    tok = load_pair_tokenizer(resolve_model(name).path, max_length)
    long = " ".join(doc(400, 9).split()) + " and the end"
    docs = [long, "a short one", long[:90]]
    batch = tok.encode(["where is the museum"], [0, 0, 0], docs, ChunkPolicy(), None, {0: chunking, 1: chunking})
    assert set(batch.windows) == {0} and batch.size == 3  # the short doc fits one window: scored as a pair
    assert sorted(int(r) for c in batch.chunks for r in c.rows) == [1, 2]
    windows = batch.windows[0]
    assert 1 < len(windows) <= chunking.max_windows and windows[0][0] == 0
    texts = [long[s:e] for s, e, _ in windows]
    again = tok.encode(["where is the museum"], [0] * len(texts), texts, ChunkPolicy(overhead_tokens=10**9))
    lengths = {int(r): int(n) for c in again.chunks for r, n in zip(c.rows, c.attention_mask.sum(axis=1))}
    for k, (_, _, tokens) in enumerate(windows):
        assert lengths[k] <= max_length  # re-tokenized as a pair, each window fits: the model sees all of it
        assert abs(lengths[k] - tokens) <= 2  # and costs what the broker is told
    if len(windows) < chunking.max_windows:
        assert long.endswith(texts[-1])  # the windows reach the document's end


@pytest.mark.parametrize("direction", ["right", "left"])
def test_max_tokens_per_doc_cuts_a_document_before_it_is_split(direction):
    tok = load_pair_tokenizer(resolve_model("tiny-bert").path, 48)
    long = " ".join(doc(400, 9).split())
    plain = tok._plain()
    offsets = plain.encode(long, add_special_tokens=False).offsets
    limit = 100
    kept = long[: offsets[limit - 1][1]] if direction == "right" else long[offsets[-limit][0]:]
    cut = Truncation(True, direction, max_tokens_per_doc=limit)
    chunking = Chunking(overlap_tokens=0, max_windows=64)
    batch = tok.encode(["where is the museum"], [0], [long], ChunkPolicy(), [cut], {0: chunking})
    whole = tok.encode(["where is the museum"], [0], [long], ChunkPolicy(), None, {0: chunking})
    (windows,) = batch.windows.values()
    start, end = windows[0][0], windows[-1][1]
    assert long[start:end] == kept.strip()  # the windows cover the kept tokens' text, and only that
    assert len(windows) < len(whole.windows[0])
