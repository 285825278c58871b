"""Padding plans: chunks of similar length bound the padding waste."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from rerankpool.worker.tokenize import ChunkPolicy, plan_chunks, round_up


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
