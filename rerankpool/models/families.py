"""The model families the pool serves, and which engines serve each, read from config.json.

A checkpoint's family comes from its config.json (``model_type``, else ``architectures``),
never from its name or hub id: ``BAAI/bge-reranker-base`` is XLM-RoBERTa because its
config says ``"model_type": "xlm-roberta"``. Each family lists the engines whose scores
are tested to equal ``sentence_transformers.CrossEncoder.predict`` on it (fp32, 1e-4):

- torch serves every family: padded, or packed (the default on CUDA) for BERT, XLM-RoBERTa, ELECTRA
  and ModernBERT (``rerankpool.worker.engines.packed_encoder``, ``packed_modernbert``).
- onnx serves the families whose ``torch.onnx.export`` matches torch on several shapes
  (``rerankpool.worker.engines.onnx_export``): all of these.
- mlx serves BERT and XLM-RoBERTa (``rerankpool.worker.engines.mlx_encoder``).

LLM rerankers (``rerankpool.models.llm``: a causal LM judging a prompt) are their own
family, told apart by their ``...ForCausalLM`` architecture.

This module is torch-free: the broker, the CLI and ``/info`` read it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from .errors import ModelError
from .llm import is_llm_reranker


class UnsupportedModelError(ModelError):
    """config.json names a model family rerankpool does not serve (or not with this engine)."""


@dataclass(frozen=True)
class Family:
    """One family: how config.json names it, real checkpoints of it, and the engines that serve it."""

    name: str
    title: str
    model_types: tuple[str, ...]
    architecture_prefix: str  # what its ``architectures`` entries start with, for configs without model_type
    examples: tuple[str, ...]
    engines: tuple[str, ...]
    builtin: str | None  # the tiny random TEST checkpoint of this family
    pair: str  # how CrossEncoder's tokenizer lays out a (query, doc) pair
    note: str = ""


FAMILIES: tuple[Family, ...] = (
    Family(
        name="bert", title="BERT / MiniLM", model_types=("bert",), architecture_prefix="Bert",
        examples=("cross-encoder/ms-marco-MiniLM-L-6-v2", "cross-encoder/ms-marco-MiniLM-L-12-v2",
                  "cross-encoder/ms-marco-TinyBERT-L-2-v2"),
        engines=("torch", "onnx", "mlx"), builtin="tiny-bert",
        pair="[CLS] q [SEP] d [SEP], token types 0 then 1",
    ),
    Family(
        name="xlm-roberta", title="XLM-RoBERTa", model_types=("xlm-roberta",), architecture_prefix="XLMRoberta",
        examples=("BAAI/bge-reranker-base", "BAAI/bge-reranker-large", "BAAI/bge-reranker-v2-m3"),
        engines=("torch", "onnx", "mlx"), builtin="tiny-xlm-roberta",
        pair="<s> q </s></s> d </s>, no token types; positions count from pad_token_id + 1",
    ),
    Family(
        name="electra", title="ELECTRA", model_types=("electra",), architecture_prefix="Electra",
        examples=("cross-encoder/ms-marco-electra-base",),
        engines=("torch", "onnx"), builtin="tiny-electra",
        pair="[CLS] q [SEP] d [SEP], token types 0 then 1 (BERT's uncased WordPiece)",
    ),
    Family(
        name="modernbert", title="ModernBERT", model_types=("modernbert",), architecture_prefix="ModernBert",
        examples=("Alibaba-NLP/gte-reranker-modernbert-base",),
        engines=("torch", "onnx"), builtin="tiny-modernbert",
        pair="[CLS] q [SEP] d [SEP], no token types; global and sliding-window layers, mean pooling",
    ),
    Family(
        name="deberta-v2", title="DeBERTa-v2 / v3", model_types=("deberta-v2",), architecture_prefix="DebertaV2",
        examples=("mixedbread-ai/mxbai-rerank-base-v1", "mixedbread-ai/mxbai-rerank-large-v1"),
        engines=("torch", "onnx"), builtin="tiny-deberta-v2",
        pair="[CLS] q [SEP] d [SEP], token types 0 then 1 (unused at type_vocab_size 0)",
        note="transformers has no SDPA attention for it: torch runs it eager",
    ),
)
BY_MODEL_TYPE: dict[str, Family] = {t: f for f in FAMILIES for t in f.model_types}

# LLM rerankers, served by another module; listed here so every family is in one table.
LLM_FAMILY = Family(
    name="llm", title="LLM reranker (causal LM + prompt)", model_types=(), architecture_prefix="",
    examples=("Qwen/Qwen3-Reranker-0.6B", "Qwen/Qwen3-Reranker-4B", "BAAI/bge-reranker-v2-gemma"),
    engines=("torch",), builtin="tiny-qwen3-reranker",
    pair="the model card's prompt around q and d; score from the yes/no next-token logits",
)


class FamilyRow(NamedTuple):
    """One line of ``list_families()``: what ``rerankpool models`` and ``/info`` show."""

    family: str
    title: str
    examples: tuple[str, ...]
    engines: tuple[str, ...]
    builtin: str | None


def list_families() -> list[FamilyRow]:
    """Every family the pool serves, with example checkpoints and the engines that serve it."""
    return [FamilyRow(f.name, f.title, f.examples, f.engines, f.builtin) for f in (*FAMILIES, LLM_FAMILY)]


def load_config(model_path: Path) -> dict[str, Any]:
    """A checkpoint's config.json; raise ``UnsupportedModelError`` when it is missing or not a JSON object."""
    path = Path(model_path) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UnsupportedModelError(f"cannot read {path} ({exc}); a transformers checkpoint needs one") from exc
    if not isinstance(config, dict):
        raise UnsupportedModelError(f"{path} is not a JSON object")
    return config


def find_family(config: dict[str, Any]) -> Family | None:
    """The family config.json describes, or None when rerankpool does not know it."""
    if is_llm_reranker(config):
        return LLM_FAMILY
    model_type = config.get("model_type")
    if model_type:
        return BY_MODEL_TYPE.get(str(model_type))
    architectures = [str(a) for a in config.get("architectures") or []]
    # Longest prefix first: "Bert" must not claim "BertGeneration"-like names another family owns.
    for family in sorted(FAMILIES, key=lambda f: -len(f.architecture_prefix)):
        if any(a.startswith(family.architecture_prefix) for a in architectures):
            return family
    return None


def family_of(config: dict[str, Any]) -> Family:
    """The family config.json describes; raise ``UnsupportedModelError`` naming the supported ones."""
    family = find_family(config)
    if family is None:
        raise UnsupportedModelError(
            f"model_type {config.get('model_type')!r} (architectures {config.get('architectures')}) is not a "
            f"family rerankpool serves. Supported: {supported_text()}"
        )
    return family


def check_engine(config: dict[str, Any], engine: str) -> Family:
    """The family, if ``engine`` serves it; else ``UnsupportedModelError`` naming the engines that do."""
    family = family_of(config)
    if engine not in family.engines:
        note = f" ({family.note})" if family.note else ""
        raise UnsupportedModelError(
            f"the {engine} engine does not serve {family.title} checkpoints (model_type "
            f"{config.get('model_type')!r}){note}; use --engine {' or '.join(family.engines)}"
        )
    return family


def supported_text() -> str:
    """``"bert (torch, onnx, mlx), xlm-roberta (torch, onnx), ..."``, for error messages."""
    return ", ".join(f"{row.family} ({', '.join(row.engines)})" for row in list_families())
