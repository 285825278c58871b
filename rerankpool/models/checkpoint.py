"""Write a transformers ``BertForSequenceClassification`` checkpoint from plain weights.

Shared by every builtin so they all produce the same layout: ``config.json`` +
``model.safetensors`` + tokenizer files. torch and transformers are imported here, lazily,
because only a process that builds a model needs them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ModelBuildError
from .names import PROVENANCE_NAME
from .sources import TORCH_HINT

logger = logging.getLogger(__name__)

# Buffers transformers rebuilds itself; old checkpoints sometimes still carry them.
_IGNORED_KEYS = ("position_ids", "token_type_ids")


def import_transformers():
    """Import torch + transformers, or raise an error saying which extra to install."""
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as exc:
        raise ModelBuildError(
            f"Building a builtin model needs torch and transformers ({exc}). Install them with: {TORCH_HINT}"
        ) from exc
    return transformers


def bert_config(**kwargs: Any):
    """A ``BertConfig`` for a single-logit cross-encoder, plus whatever ``kwargs`` override."""
    transformers = import_transformers()
    kwargs.setdefault("num_labels", 1)
    kwargs.setdefault("architectures", ["BertForSequenceClassification"])
    return transformers.BertConfig(**kwargs)


def new_bert_classifier(config, seed: int):
    """A freshly initialised ``BertForSequenceClassification``, deterministic for ``seed``."""
    import torch

    transformers = import_transformers()
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
        torch.manual_seed(seed)
        return transformers.BertForSequenceClassification(config).eval()


def load_weights(model, weights: Mapping[str, Any], *, allow_missing: tuple[str, ...] = ()) -> None:
    """Copy ``weights`` (numpy or torch) into ``model``; fail loudly on any name mismatch.

    ``allow_missing`` lists key prefixes that may stay at their initial value (a seeded head).
    """
    import torch

    tensors = {
        k: v if isinstance(v, torch.Tensor) else torch.from_numpy(v)
        for k, v in weights.items()
        if not k.endswith(_IGNORED_KEYS)
    }
    result = model.load_state_dict(tensors, strict=False)
    missing = [
        k
        for k in result.missing_keys
        if not k.startswith(allow_missing) and not k.endswith(_IGNORED_KEYS)
    ]
    if missing or result.unexpected_keys:
        raise ModelBuildError(
            f"weights do not fit BertForSequenceClassification: missing {missing[:8]}, "
            f"unexpected {list(result.unexpected_keys)[:8]}. The source files may be from an "
            "unsupported version; delete the cache dir and reinstall the package that ships them."
        )


def save_checkpoint(model, dest: Path) -> None:
    """Save ``model`` as safetensors + config.json into ``dest``."""
    from transformers.utils import logging as hf_logging

    dest.mkdir(parents=True, exist_ok=True)
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a one-shard progress bar is noise in worker logs
    try:
        model.save_pretrained(dest)
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    if not (dest / "model.safetensors").is_file():
        raise ModelBuildError(f"transformers did not write model.safetensors into {dest}")


def write_provenance(dest: Path, builtin: str, **details: Any) -> None:
    """Record which builtin (and seed/source) made ``dest``, for resolving it later as a path."""
    record = {
        "builtin": builtin,
        **{k: str(v) if isinstance(v, Path) else v for k, v in details.items()},
    }
    (dest / PROVENANCE_NAME).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
