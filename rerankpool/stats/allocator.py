"""Framework allocator memory, read inside a worker process.

CUDA/MPS/MLX allocators are per process, so no outside probe can see them;
each worker calls ``allocator_memory`` and reports the result with its stats.
It only looks at frameworks already in ``sys.modules``: importing torch or
mlx just to ask would cost seconds and memory in a worker that uses ONNX.

Keys (all MB = MiB):
    torch_cuda_allocated_mb       bytes held by live tensors on the current CUDA device
    torch_cuda_reserved_mb        bytes the caching allocator holds from the driver
    torch_cuda_peak_allocated_mb  high-water mark of allocated since start / reset
    torch_mps_allocated_mb        bytes held by live tensors on MPS
    torch_mps_driver_mb           bytes the Metal driver allocated for the process
                                  (includes the MPS allocator's cache)
    mlx_active_mb                 bytes in live MLX arrays
    mlx_peak_mb                   high-water mark of active since start / reset
    mlx_cache_mb                  freed buffers MLX keeps for reuse
"""

from __future__ import annotations

import logging
import sys
from types import ModuleType
from typing import Callable

from rerankpool.stats.probe import Readings, bytes_to_mb

log = logging.getLogger(__name__)


def allocator_memory(engine_kind: str = "auto") -> Readings:
    """Allocator memory of the frameworks this process already uses.

    ``engine_kind`` says which allocators to ask (case-insensitive substring match):
      - contains "cuda": torch CUDA, if torch is imported and CUDA initialised;
      - contains "mps": torch MPS, if torch is imported and MPS available;
      - contains "mlx": MLX, if ``mlx.core`` is imported;
      - "torch": CUDA as above, else MPS on macOS;
      - "auto": torch CUDA and MLX as above (not MPS: there is no cheap way to
        tell whether MPS is in use, and asking would initialise it);
      - anything else (e.g. "onnx"): nothing.
    Returns ``{}`` when nothing applies; never raises and never imports a framework.
    """
    kind = engine_kind.lower()
    row: Readings = {}
    try:
        if kind == "auto":
            row.update(_torch_cuda())
            row.update(_mlx())
        elif kind == "torch":
            row.update(_torch_cuda() or (_torch_mps() if sys.platform == "darwin" else {}))
        else:
            if "cuda" in kind:
                row.update(_torch_cuda())
            if "mps" in kind:
                row.update(_torch_mps())
            if "mlx" in kind:
                row.update(_mlx())
    except Exception as exc:  # a stats call must never take a worker down
        log.warning("allocator_memory(%r) failed: %s", engine_kind, exc)
        return {}
    return row


def _torch_cuda() -> Readings:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return {}
    return {
        "torch_cuda_allocated_mb": bytes_to_mb(torch.cuda.memory_allocated()),
        "torch_cuda_reserved_mb": bytes_to_mb(torch.cuda.memory_reserved()),
        "torch_cuda_peak_allocated_mb": bytes_to_mb(torch.cuda.max_memory_allocated()),
    }


def _torch_mps() -> Readings:
    torch = sys.modules.get("torch")
    if torch is None or not torch.backends.mps.is_available():
        return {}
    return {
        "torch_mps_allocated_mb": bytes_to_mb(torch.mps.current_allocated_memory()),
        "torch_mps_driver_mb": bytes_to_mb(torch.mps.driver_allocated_memory()),
    }


def _mlx() -> Readings:
    mx = sys.modules.get("mlx.core")
    if mx is None:
        return {}
    row: Readings = {}
    for key, fn_name in (("mlx_active_mb", "get_active_memory"),
                         ("mlx_peak_mb", "get_peak_memory"),
                         ("mlx_cache_mb", "get_cache_memory")):
        fn = _mlx_function(mx, fn_name)
        if fn is not None:
            row[key] = bytes_to_mb(fn())
    return row


def _mlx_function(mx: ModuleType, name: str) -> Callable[[], int] | None:
    """``mx.<name>`` (mlx >= 0.24), else the older ``mx.metal.<name>``."""
    fn = getattr(mx, name, None)
    if fn is None:
        fn = getattr(getattr(mx, "metal", None), name, None)
    return fn
