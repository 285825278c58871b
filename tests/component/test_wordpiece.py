"""flash-tokenizer gives exactly the ids ``tokenizers`` gives, or the text goes to ``tokenizers``.

Checked against ``tokenizers`` itself on every SQuAD text, on real pairs (with and
without truncation), on random text built from the characters that trip flash-tokenizer
up, and on the truncation rule over a grid of lengths.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rerankpool.models import DEFAULT_MODEL, resolve_model
from rerankpool.worker.policy import ChunkPolicy
from rerankpool.worker.tokenize import PairTokenizer, longest_first
from rerankpool.worker.wordpiece import bert_spec, load_fast_wordpiece

pytest.importorskip("flash_tokenizer", reason="flash-tokenizer has wheels for Linux x86-64 and Windows only")


@pytest.fixture(scope="module")
def tokenizer_json():
    return resolve_model(DEFAULT_MODEL).path / "tokenizer.json"


@pytest.fixture(scope="module")
def words(tokenizer_json):
    encoder = load_fast_wordpiece(tokenizer_json, threads=2)
    assert encoder is not None, "the default model's tokenizer is plain BERT: flash-tokenizer must take it"
    return encoder


@pytest.fixture(scope="module")
def slow(tokenizer_json):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.no_padding()
    tok.no_truncation()
    return tok


def reference(slow, texts):
    return [e.ids for e in slow.encode_batch(texts, add_special_tokens=False)]


def test_every_squad_text_gets_the_ids_tokenizers_gives(words, slow):
    from rerankpool.bench.datasets import load_squad

    data = load_squad()
    texts = [p.text for p in data.passages] + [q.text for q in data.queries]
    assert words.encode(texts).lists() == reference(slow, texts)
    assert sum(map(words.safe, texts)) > 0.9 * len(texts)  # and flash-tokenizer does most of them


def test_texts_that_trip_flash_tokenizer_up_go_to_tokenizers(words, slow):
    tricky = [
        "civil code §622 stated",  # § is punctuation to tokenizers, not to flash-tokenizer
        "1⁄2 mile",  # the fraction slash
        "¿Qué? «bien»",
        "cafe\u0301 na\u0308ive",  # combining accents
        "query [SEP] injected [CLS] tokens",  # special tokens spelled out
        "a" * 120,  # over the 100-character word limit: [UNK] (caught on flash-tokenizer's output)
        "x " + "ab" * 51 + " y",
        "tab\tnew\nline\x00nul\x7fdel",
    ]
    assert not any(words.safe(t) for t in tricky[:5])
    assert words.encode(tricky).lists() == reference(slow, tricky)


ALPHABET = st.sampled_from(
    list("abcXYZ019 .,;:!?'\"()-_/\\@#$%^&*[]{}<>~`|+=\t\n")
    + list("éüßøÅçñ§¶¿¡«»–—“”‘’…•°±×÷⁄€£¥©®™")
    + ["\u0301", "\u0308", "\u00ad", "\u200b", "\u200d", "\ufeff", "\x00", "\x1f", "\x7f", "\ufffd"]
    + list("中文日本語한국어ÆŒĳǅΩπЖж") + ["😀", "👍🏽", "𝔘"]
    + ["[SEP]", "[CLS]", "[UNK]", "[PAD]", "[MASK]", "x" * 60, "é" * 55]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(ALPHABET, max_size=40).map("".join), min_size=1, max_size=8))
def test_random_text_gets_the_ids_tokenizers_gives(words, slow, texts):
    assert words.encode(texts).lists() == reference(slow, texts)


def test_pairs_match_tokenizers_in_every_chunk(tokenizer_json):
    """The whole encode path, flash or not, gives the same chunks: ids, types, lengths, order."""
    from rerankpool.bench.datasets import load_squad, pair_stream

    pairs = pair_stream(load_squad(), 600, seed=3)
    queries = sorted({q for q, _ in pairs})
    index = [queries.index(q) for q, _ in pairs]
    docs = [d for _, d in pairs]
    for max_length in (512, 96):  # 96 truncates most pairs, some on the query side
        fast = PairTokenizer(tokenizer_json, max_length)
        plain = PairTokenizer(tokenizer_json, max_length, fast=False)
        assert (fast.backend, plain.backend) == ("flash-tokenizer+tokenizers", "tokenizers")
        for policy in (ChunkPolicy(), ChunkPolicy(packed=True, max_tokens=8192)):
            a, b = fast.encode(queries, index, docs, policy), plain.encode(queries, index, docs, policy)
            assert len(a.chunks) == len(b.chunks)
            for x, y in zip(a.chunks, b.chunks):
                for field in ("rows", "input_ids", "token_type_ids", "attention_mask", "lengths"):
                    if hasattr(x, field):
                        np.testing.assert_array_equal(getattr(x, field), getattr(y, field), err_msg=field)


def test_truncation_keeps_what_tokenizers_keeps(slow):
    """``longest_first`` against ``tokenizers`` on pairs of n1 and n2 one-token words, every budget."""
    for max_length in range(4, 20):
        slow.enable_truncation(max_length, strategy="longest_first")
        for n1 in range(0, 14):
            for n2 in range(0, 14):
                enc = slow.encode(" ".join(["a"] * n1), " ".join(["b"] * n2))
                kept = (enc.ids.count(slow.token_to_id("a")), enc.ids.count(slow.token_to_id("b")))
                assert tuple(map(int, longest_first(n1, n2, max_length - 3))) == kept, (max_length, n1, n2)
    slow.no_truncation()


def test_only_plain_bert_tokenizers_qualify(tokenizer_json, tmp_path):
    assert bert_spec(tokenizer_json) is not None
    config = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    config["post_processor"] = {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0],
                                "trim_offsets": True, "add_prefix_space": False}
    other = tmp_path / "tokenizer.json"
    other.write_text(json.dumps(config), encoding="utf-8")
    assert bert_spec(other) is None
    assert PairTokenizer(other).backend == "tokenizers"
