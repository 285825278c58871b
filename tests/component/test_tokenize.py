"""Padding plans: chunks of similar length bound the padding waste."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from rerankpool.worker.policy import ChunkPolicy, plan_chunks, plan_packed, round_up
from rerankpool.worker.wordpiece import balanced_order


def waste(lengths, chunks, multiple=1):
    padded = sum(len(c) * round_up(max(lengths[i] for i in c), multiple) for c in chunks)
    return 1 - sum(lengths) / padded


def test_similar_lengths_stay_in_one_chunk():
    assert len(plan_chunks([100, 102, 98, 101, 99])) == 1


def test_a_long_outlier_gets_its_own_chunk():
    lengths = [20] * 8 + [500]
    chunks = plan_chunks(lengths, ChunkPolicy(overhead_tokens=32))
    assert len(chunks) == 2 and waste(lengths, chunks) < 0.05


def test_a_costly_forward_pass_keeps_the_outlier_in():
    lengths = [20] * 8 + [500]
    assert len(plan_chunks(lengths, ChunkPolicy(overhead_tokens=8192))) == 1


def test_token_budget_splits_chunks():
    chunks = plan_chunks([64] * 10, ChunkPolicy(max_tokens=256))
    assert [len(c) for c in chunks] == [4, 4, 2]


@given(st.lists(st.integers(1, 512), min_size=1, max_size=200), st.sampled_from([1, 8, 16]))
def test_every_row_appears_once_sorted_by_length(lengths, multiple):
    chunks = plan_chunks(lengths, ChunkPolicy(pad_multiple=multiple))
    rows = np.concatenate(chunks)
    assert sorted(rows.tolist()) == list(range(len(lengths)))
    assert [lengths[r] for r in rows] == sorted(lengths)


@given(st.lists(st.integers(1, 512), min_size=1, max_size=200), st.sampled_from([None, 512, 2048]))
def test_packed_chunks_cover_every_row_within_the_budget(lengths, budget):
    chunks = plan_packed(lengths, budget)
    rows = np.concatenate(chunks)
    assert sorted(rows.tolist()) == list(range(len(lengths)))
    assert [lengths[r] for r in rows] == sorted(lengths)
    for chunk in chunks:
        tokens = sum(lengths[r] for r in chunk)
        assert budget is None or tokens <= budget or len(chunk) == 1
    if budget is None:
        assert len(chunks) == 1


def test_packed_encoding_holds_the_padded_chunks_tokens(tmp_path):
    """A packed chunk is the padded chunks' real tokens back to back, nothing else."""
    from rerankpool.models import TINY_MODEL, resolve_model
    from rerankpool.worker.tokenize import PairTokenizer

    tokenizer = PairTokenizer(resolve_model(TINY_MODEL).path / "tokenizer.json", max_length=64)
    docs = ["short doc", "a somewhat longer document about rivers " * 3, "x " * 200, "mid length text here"]
    padded = tokenizer.encode(["which river?"], [0] * 4, docs)
    packed = tokenizer.encode(["which river?"], [0] * 4, docs, ChunkPolicy(packed=True, max_tokens=100))
    assert packed.padded_tokens == packed.real_tokens == padded.real_tokens
    by_row = {}
    for chunk in padded.chunks:
        for i, row in enumerate(chunk.rows):
            n = int(chunk.attention_mask[i].sum())
            by_row[int(row)] = (chunk.input_ids[i, :n].tolist(), chunk.token_type_ids[i, :n].tolist())
    for chunk in packed.chunks:
        starts = np.concatenate([[0], np.cumsum(chunk.lengths)])
        assert list(chunk.lengths) == sorted(chunk.lengths)
        for i, row in enumerate(chunk.rows):
            a, b = starts[i], starts[i + 1]
            assert (chunk.input_ids[a:b].tolist(), chunk.token_type_ids[a:b].tolist()) == by_row[int(row)]
    assert sorted(int(r) for c in packed.chunks for r in c.rows) == [0, 1, 2, 3]
    assert len(packed.chunks) > 1  # the 64-token pair does not fit with the others in 100 tokens


@given(st.lists(st.integers(0, 2000), max_size=300), st.integers(1, 16))
def test_balanced_order_evens_out_openmp_static_blocks(sizes, parts):
    order = balanced_order(np.array(sizes, dtype=np.int64), parts)
    assert sorted(order.tolist()) == list(range(len(sizes)))  # a permutation
    # libgomp's static schedule: contiguous blocks, the first n % parts one item longer
    q, r = divmod(len(sizes), parts)
    counts = [q + 1 if i < r else q for i in range(parts)]
    bounds = np.cumsum([0, *counts])
    totals = [sum(sizes[j] for j in order[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    if sizes:
        assert max(totals) - min(totals) <= max(sizes)
