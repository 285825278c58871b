"""Errors raised while resolving or building a model.

They subclass ``RuntimeError`` and their messages always end with what the user can do
next (install an extra, pick a builtin, fix a path), because they surface in the CLI.
"""

from __future__ import annotations


class ModelError(RuntimeError):
    """Base class for everything ``rerankpool.models`` raises on purpose."""


class ModelNotFoundError(ModelError):
    """The ``--model`` spec names nothing we can load: unknown hub id, missing dir or package."""


class ModelBuildError(ModelError):
    """A builtin model was found but could not be converted into a checkpoint."""
