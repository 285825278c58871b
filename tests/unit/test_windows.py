"""Where a long document's windows fall (``rerankpool.worker.windows``), under any lengths and settings."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rerankpool.worker.windows import plan_windows


def document(word_lengths: list[int]) -> tuple[list[tuple[int, int]], list[int]]:
    """Token offsets and word ids of words of these many tokens, each token 2 characters, words 1 space apart."""
    offsets, word_ids, at = [], [], 0
    for w, n in enumerate(word_lengths):
        for _ in range(n):
            offsets.append((at, at + 2))
            word_ids.append(w)
            at += 2
        at += 1
    return offsets, word_ids


@settings(max_examples=300, deadline=None)
@given(words=st.lists(st.integers(1, 4), min_size=1, max_size=120), width=st.integers(1, 40),
       overlap=st.integers(0, 40), max_windows=st.integers(1, 50))
def test_windows_cover_the_document_in_order_within_their_width(words, width, overlap, max_windows):
    offsets, word_ids = document(words)
    windows = plan_windows(offsets, word_ids, width, overlap, max_windows, overhead=5)
    n = len(offsets)
    assert 1 <= len(windows) <= max_windows
    assert windows[0][0] == 0  # from the document's start
    token_at = {start: k for k, (start, _) in enumerate(offsets)}
    end_at = {end: k + 1 for k, (_, end) in enumerate(offsets)}
    spans = [(token_at[s], end_at[e], t) for s, e, t in windows]
    for (s, e, t), nxt in zip(spans, spans[1:] + [None]):
        assert 0 < e - s <= width and t == e - s + 5  # within the width; its pair's tokens counted
        if nxt is not None:
            assert s < nxt[0] <= e  # moving on, overlapping or touching, never leaving a gap
            assert e - nxt[0] <= min(overlap, width // 2)
    if len(windows) < max_windows:
        assert spans[-1][1] == n  # unless cut short by max_windows, the last window ends the document


@settings(max_examples=200, deadline=None)
@given(words=st.lists(st.integers(1, 3), min_size=1, max_size=80), width=st.integers(3, 30), overlap=st.integers(0, 10))
def test_windows_start_and_end_at_words_where_a_word_fits(words, width, overlap):
    """With words shorter than a window, no window starts or ends inside a word."""
    offsets, word_ids = document(words)
    starts = {offsets[k][0] for k in range(len(offsets)) if k == 0 or word_ids[k] != word_ids[k - 1]}
    ends = {offsets[k][1] for k in range(len(offsets)) if k == len(offsets) - 1 or word_ids[k] != word_ids[k + 1]}
    for start, end, _ in plan_windows(offsets, word_ids, width, overlap, 1000):
        assert start in starts and end in ends


def test_a_document_that_fits_is_one_window_and_an_empty_one_too():
    offsets, word_ids = document([1, 2, 1])
    assert plan_windows(offsets, word_ids, 10, 2, 5, overhead=7) == [(0, offsets[-1][1], 4 + 7)]
    assert plan_windows([], [], 10, 2, 5, overhead=7) == [(0, 0, 7)]
