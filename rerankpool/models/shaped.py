"""Full-size random checkpoints shaped like rerankers the hub serves: BENCH models, scores meaningless.

The hub cannot be reached where rerankpool is measured, so a benchmark of a large family
runs a checkpoint built from the real config.json (every size as published) with seeded
random weights: the compute is the real model's, the scores mean nothing, and every report
says so. The tokenizers are built as the families' tiny ones are
(``rerankpool.models.tiny_families``, ``rerankpool.models.llm``) but keep every whole word
of BERT's vocabulary, so English text splits into about as many tokens as with the real
vocabulary, and pairs are as long as the real model's.

- ``bge-reranker-v2-m3-shape``: XLM-RoBERTa large (24 layers, hidden 1024, 568M parameters,
  8,194 positions), as BAAI/bge-reranker-v2-m3.
- ``gte-reranker-modernbert-base-shape``: ModernBERT base (22 layers, hidden 768, every third
  layer global, the others a 128-token sliding window), as Alibaba-NLP/gte-reranker-modernbert-base;
  its byte-level BPE keeps capitalized words too, so its embedding has 107,219 rows against
  the real 50,368 (a lookup: the compute is the real model's).
- ``qwen3-reranker-0.6b-shape``: Qwen3 (28 layers, hidden 1024, 16/8 heads of 128), as
  Qwen/Qwen3-Reranker-0.6B, with the real vocabulary size (151,669 rows, most unused).

Importing this module is torch-free (the registry names these builtins).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .tiny_families import REAL_CONFIGS, write_modernbert_tokenizer, write_xlm_roberta_tokenizer

FULL_VOCABULARY_WORDS = 30_000  # more than BERT's vocabulary has: every whole word of it
QWEN3_BPE_VOCAB = 60_000  # pieces the shaped Qwen3 tokenizer learns (its embedding keeps the real 151,669 rows)

BGE_M3_SHAPE: dict[str, Any] = {  # BAAI/bge-reranker-v2-m3's config.json
    **REAL_CONFIGS["xlm-roberta"], "hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
    "num_hidden_layers": 24, "max_position_embeddings": 8194, "vocab_size": 250002,
}
QWEN3_06B_SHAPE: dict[str, Any] = {  # Qwen/Qwen3-Reranker-0.6B's config.json
    "architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "head_dim": 128,
    "hidden_act": "silu", "hidden_size": 1024, "initializer_range": 0.02, "intermediate_size": 3072,
    "max_position_embeddings": 40960, "max_window_layers": 28, "num_attention_heads": 16,
    "num_hidden_layers": 28, "num_key_value_heads": 8, "rms_norm_eps": 1e-06, "rope_scaling": None,
    "rope_theta": 1000000, "sliding_window": None, "tie_word_embeddings": True, "use_cache": True,
    "use_sliding_window": False, "vocab_size": 151669,
}


@dataclass(frozen=True)
class ShapedModel:
    """A builtin bench checkpoint: its name, the real checkpoint it is shaped like, and its builder."""

    name: str
    source: str
    shape: str
    build: Callable[[Path], Path]

    @property
    def description(self) -> str:
        return (f"full-size random checkpoint shaped like {self.source} ({self.shape}) for benchmarks: "
                "scores are meaningless")

    @property
    def label(self) -> str:
        return f"{self.name} (random BENCH model shaped like {self.source}: scores are meaningless)"


def build_encoder_shape(path: Path, shaped: "ShapedModel", config: dict[str, Any],
                        write_tokenizer: Callable[[Path, int], dict[str, int]], seed: int = 0) -> Path:
    """An encoder cross-encoder with a real config, seeded random weights and a full-word tokenizer of its family.
    The config's vocabulary size stays unless the tokenizer needs more rows."""
    import torch

    from .checkpoint import import_transformers, save_checkpoint, write_provenance

    transformers = import_transformers()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    special = write_tokenizer(path, FULL_VOCABULARY_WORDS)
    fields = {**config, **special, "vocab_size": max(config["vocab_size"], special["vocab_size"])}
    fields.update(num_labels=1, id2label={0: "LABEL_0"}, label2id={"LABEL_0": 0})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.AutoModelForSequenceClassification.from_config(
            transformers.AutoConfig.for_model(**fields)).eval()
    save_checkpoint(model, path)
    write_provenance(path, shaped.name, seed=seed, shaped_like=shaped.source)
    return path


def build_bge_m3_shape(path: Path, seed: int = 0) -> Path:
    """XLM-R large with bge-reranker-v2-m3's config and a full-word XLM-R tokenizer."""
    return build_encoder_shape(path, BGE_M3, BGE_M3_SHAPE, write_xlm_roberta_tokenizer, seed)


def build_modernbert_shape(path: Path, seed: int = 0) -> Path:
    """ModernBERT base with gte-reranker-modernbert-base's config and a full-word byte-level BPE."""
    return build_encoder_shape(path, MODERNBERT_BASE, REAL_CONFIGS["modernbert"], write_modernbert_tokenizer, seed)


def build_qwen3_06b_shape(path: Path, seed: int = 0) -> Path:
    """Qwen3-Reranker-0.6B's config with seeded random weights and a 60,000-piece byte-level BPE."""
    from .llm import build_qwen3_reranker, build_qwen3_tokenizer
    from .tiny_families import bert_words

    words, _ = bert_words(FULL_VOCABULARY_WORDS)
    tok = build_qwen3_tokenizer(seed, QWEN3_BPE_VOCAB, words)
    return build_qwen3_reranker(path, QWEN3_06B.name, QWEN3_06B_SHAPE, tok, seed)


BGE_M3 = ShapedModel("bge-reranker-v2-m3-shape", "BAAI/bge-reranker-v2-m3",
                     "XLM-RoBERTa large, 24 layers, hidden 1024, 568M parameters", build_bge_m3_shape)
MODERNBERT_BASE = ShapedModel("gte-reranker-modernbert-base-shape", "Alibaba-NLP/gte-reranker-modernbert-base",
                              "ModernBERT base, 22 layers, hidden 768, 149M parameters", build_modernbert_shape)
QWEN3_06B = ShapedModel("qwen3-reranker-0.6b-shape", "Qwen/Qwen3-Reranker-0.6B",
                        "Qwen3, 28 layers, hidden 1024, 0.6B parameters", build_qwen3_06b_shape)
SHAPED_MODELS: dict[str, ShapedModel] = {m.name: m for m in (BGE_M3, MODERNBERT_BASE, QWEN3_06B)}
