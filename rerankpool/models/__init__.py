"""Resolve ``--model`` to a local transformers checkpoint, with offline builtin models.

Importing this package is cheap and torch-free (the broker imports it); torch, transformers
and onnx are only imported by a process that has to build a builtin into the cache.
"""

from __future__ import annotations

from .cache import cache_dir
from .errors import ModelBuildError, ModelError, ModelNotFoundError
from .registry import (
    DEFAULT_MODEL,
    STANDIN_MODEL,
    TINY_MODEL,
    BuiltinModel,
    ResolvedModel,
    list_builtin_models,
    resolve_model,
)
from .tiny import build_tiny_bert

__all__ = [
    "DEFAULT_MODEL",
    "STANDIN_MODEL",
    "TINY_MODEL",
    "BuiltinModel",
    "ModelBuildError",
    "ModelError",
    "ModelNotFoundError",
    "ResolvedModel",
    "build_tiny_bert",
    "cache_dir",
    "list_builtin_models",
    "resolve_model",
]
