"""Names of the builtin models, in a leaf module so builders and the registry can share them."""

from __future__ import annotations

DEFAULT_MODEL = "ms-marco-MiniLM-L-12-v2"
STANDIN_MODEL = "minilm-l6-standin"
TINY_MODEL = "tiny-bert"
ALIASES = {"default": DEFAULT_MODEL}

# Provenance file a builder leaves in a model dir, so a builtin passed later as a local
# path (or a tiny model a test built by hand) still reports what it is.
PROVENANCE_NAME = "rerankpool-model.json"
