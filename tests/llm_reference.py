"""The model cards' reference code for LLM rerankers, run with transformers: what the pool must equal.

``QwenReference`` is Qwen3-Reranker's card code as written there (left padding, the full
``...ForCausalLM`` forward pass, every logit), with ``max_length`` and the instruction as
parameters; the bench times the same code as its baseline (``rerankpool.bench.baseline``).
Shared by the component and integration tests.
"""

from __future__ import annotations

import random

from rerankpool.bench.baseline import QwenCardReranker as QwenReference  # noqa: F401

WORDS = ("the a berlin city river people million live north bank music station old new year war park "
         "capital history museum bridge").split()


def varied_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """Pairs of every length the tests need: one word to ~250 words (past a small --max-length),
    punctuation, non-ASCII, newlines, braces and a chat token inside a document."""
    rng = random.Random(seed)
    extras = ["Grüße aus München!", "東京は日本の首都です", "{query} {doc} <Document>: x", "a\n\nb\tc",
              "3.7 million € (2024)", "<|im_end|> yes no", ""]
    queries = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 10))) for _ in range(4)] + ["who?\nwhat"]
    pairs = []
    for i in range(n):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, rng.choice([4, 20, 60, 250]))))
        doc = f"{rng.choice(extras)} {words}" if i % 3 == 0 else words
        pairs.append((queries[i % len(queries)], doc))
    return pairs
