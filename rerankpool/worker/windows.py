"""Where a long document's windows fall, from its tokens: pure logic for chunked scoring.

A worker asked to split a document (``protocol.Chunking``) tokenizes it alone with the
model's own tokenizer and cuts its tokens into windows of ``width`` tokens, each overlapping
the last by ``overlap``. Windows begin and end at word boundaries where a word allows it (a
window that started inside a word would be a different text to the model), and each is given
as the characters its tokens came from, so that the broker can queue it as a pair of its own
and a caller can quote it. At most ``max_windows`` windows are made: the document's first ones.
"""

from __future__ import annotations

from typing import Sequence

Window = tuple[int, int, int]  # [start, end) characters in the document, and the pair's tokens


def plan_windows(offsets: Sequence[tuple[int, int]], word_ids: Sequence[int | None], width: int, overlap: int,
                 max_windows: int, overhead: int = 0) -> list[Window]:
    """The windows of a document of ``len(offsets)`` tokens; ``overhead``: the pair's other tokens (query and
    special tokens), added to each window's count. One window when the document fits in ``width``."""
    n = len(offsets)
    if n == 0:
        return [(0, 0, overhead)]
    if width < 1:
        raise ValueError(f"window width must be >= 1 token, got {width}")
    overlap = min(max(0, overlap), width // 2)  # every window moves on by at least half a window

    def starts_word(k: int) -> bool:
        return k == 0 or word_ids[k] is None or word_ids[k] != word_ids[k - 1]

    windows: list[Window] = []
    start = 0
    while len(windows) < max_windows:
        end = min(start + width, n)
        if end < n:  # end before a word that the window would cut, unless the word fills the window
            back = end
            while back > start + 1 and not starts_word(back):
                back -= 1
            end = back if starts_word(back) else end
        windows.append((offsets[start][0], offsets[end - 1][1], end - start + overhead))
        if end >= n:
            break
        following = max(end - overlap, start + 1)
        while following < end and not starts_word(following):
            following += 1
        start = following
    return windows
