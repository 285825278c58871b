"""What the pool's scores on each encoder family must equal: ``CrossEncoder.predict``, raw logits.

Shared by ``tests/component/test_families.py`` and ``tests/integration/test_families_pool.py``.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

FAMILY_MODELS = ("tiny-xlm-roberta", "tiny-electra", "tiny-modernbert", "tiny-deberta-v2")
MAX_LENGTH = 512
ATOL = 1e-4

VOCAB = ("the a of river city berlin people million live north bank music station old new year war park "
         "Berlin Paris capital history museum bridge how many who when").split()
ODD_DOCS = (
    "Grüße aus München! naïve café",  # non-ASCII (unknown pieces in the tiny vocabularies)
    "東京は日本の首都です",
    "a\n\nb\tc    d",  # whitespace the normalizers fold
    "   leading and trailing spaces   ",
    "3.7 million € (2024), don't stop—won't",
    "[SEP] </s> <s> <pad> [CLS] special tokens inside the text",  # XLM-R numbers <pad> as padding
)


def family_pairs(n: int = 40, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` pairs: documents of 1 to ~700 words (the longest cut at 512 tokens), odd text, and one long
    query against a long document, so longest-first truncation cuts the query too."""
    rng = random.Random(seed)

    def words(k: int) -> str:
        return " ".join(rng.choice(VOCAB) for _ in range(k))

    queries = [words(rng.randint(1, 8)) + "?" for _ in range(3)] + ["Wie viele Menschen leben in Berlin?"]
    pairs = [(words(400), words(600)), (queries[0], ODD_DOCS[0] + " " + words(30))]
    pairs += [(queries[i % len(queries)], doc) for i, doc in enumerate(ODD_DOCS)]
    while len(pairs) < n:
        pairs.append((rng.choice(queries), words(rng.randint(1, rng.choice([6, 40, 120, 700])))))
    return pairs


def crossencoder_logits(path: Path, pairs: list[tuple[str, str]], max_length: int = MAX_LENGTH) -> np.ndarray:
    """``CrossEncoder(path).predict(pairs)`` with the raw logits (6.x applies a sigmoid by default)."""
    import torch
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(path), max_length=max_length, device="cpu", activation_fn=torch.nn.Identity())
    return np.asarray(model.predict(pairs, batch_size=16, show_progress_bar=False), dtype=np.float32)
