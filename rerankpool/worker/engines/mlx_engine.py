"""MLX engine: BERT and XLM-RoBERTa cross-encoders on Apple silicon (Metal) or any CPU, via ``mlx_encoder``.

Parity with the torch engine (same checkpoint, same chunks, padded rows of mixed real
lengths): float32 within 1e-4 of torch float32 (8e-6 on ms-marco-MiniLM-L-12-v2 with
real SQuAD pairs, logits about -11..+9). Half precision against torch float32, max abs
diff: float16 5e-3 on MiniLM-L12 and 4e-3 on a tiny random BERT; bfloat16 5e-2 and 4e-2
(torch's own bfloat16 is off by 4e-2 too: bfloat16 keeps 8 bits of mantissa). The top
candidate per query did not change. Tolerances: atol 2e-2 (float16), 2e-1 (bfloat16).

Speed: on macOS the GPU (Metal) backend is the point. The Linux ``mlx[cpu]`` wheel links
the reference (netlib) BLAS, about 4 GFLOPS for a matmul where numpy's OpenBLAS does 130,
so on Linux CPUs this engine is some 30x slower than torch: use it there for parity
checks, not for serving. MLX has no thread-count setting, so ``threads`` is ignored.

Shapes: with ``compile=True`` (``mx.compile``) every new (rows, length) shape is traced
once, and without it MLX still caches kernels per shape, so the worker should pad chunks
to a multiple of 16 or 32 tokens (``ChunkPolicy(pad_multiple=...)``) to keep the number
of distinct lengths small.
"""

from __future__ import annotations

import logging
from typing import Callable

import mlx.core as mx
import numpy as np

from rerankpool.worker.engines.base import Chunk, Engine, EngineConfig, EngineLoadError
from rerankpool.worker.engines.mlx_encoder import EncoderLoadError, load_encoder

logger = logging.getLogger(__name__)

DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
GPU_NAMES = ("gpu", "mps", "metal")

# The pad_multiple the worker should use for this engine (see the module docstring).
PAD_MULTIPLE = 16


def gpu_available() -> bool:
    """Whether MLX has a GPU backend here (Metal on macOS, CUDA in mlx[cuda] builds)."""
    is_available = getattr(mx, "is_available", None)
    if is_available is not None:
        return bool(is_available(mx.gpu))
    return bool(mx.metal.is_available())


def resolve_device(device: str) -> str:
    """Map --device to an MLX device and make it the default; say what to do if absent."""
    if device == "cpu":
        mx.set_default_device(mx.cpu)
        return "cpu"
    if device in GPU_NAMES:
        if not gpu_available():
            raise EngineLoadError(
                f"--device {device}: MLX has no GPU backend here (Metal needs macOS on Apple "
                "silicon); use --device cpu with --engine mlx, or --engine torch for CUDA"
            )
        mx.set_default_device(mx.gpu)
        return "gpu"
    raise EngineLoadError(f"unknown --device {device!r} for --engine mlx: use cpu or gpu (alias mps, metal)")


def _memory_fn(name: str) -> Callable[[], int] | None:
    """``mx.<name>`` on MLX >= 0.24, ``mx.metal.<name>`` before it."""
    fn = getattr(mx, name, None)
    if fn is None:
        fn = getattr(getattr(mx, "metal", None), name, None)
    return fn


class MlxEngine(Engine):
    name = "mlx"

    def __init__(self, config: EngineConfig) -> None:
        if config.dtype not in DTYPES:
            raise EngineLoadError(f"the mlx engine runs float32, float16 or bfloat16, not {config.dtype!r}")
        self.device = resolve_device(config.device)
        self.dtype = config.dtype
        if config.threads:
            logger.info("mlx engine: MLX has no thread-count setting; --threads %d is ignored", config.threads)
        try:
            self.model = load_encoder(config.model_path, DTYPES[config.dtype])
        except EncoderLoadError as exc:
            raise EngineLoadError(str(exc)) from exc
        if self.model.config.num_labels != 1:
            raise EngineLoadError(
                f"{config.model_path} has {self.model.config.num_labels} labels; rerankpool serves "
                "single-score cross-encoders (num_labels=1)"
            )
        self._max_positions = self.model.config.max_position_embeddings
        self._forward = mx.compile(self._logits) if config.compile else self._logits
        logger.info("mlx engine: %s on %s (%s)", config.model_path, self.device, self.dtype)

    def _logits(self, input_ids: mx.array, attention_mask: mx.array, token_type_ids: mx.array) -> mx.array:
        return self.model(input_ids, attention_mask, token_type_ids)[:, 0].astype(mx.float32)

    def forward(self, chunk: Chunk) -> np.ndarray:
        if chunk.input_ids.shape[1] > self._max_positions:
            raise ValueError(
                f"chunk length {chunk.input_ids.shape[1]} exceeds the model's "
                f"{self._max_positions} positions; lower --max-length"
            )
        logits = self._forward(
            mx.array(chunk.input_ids.astype(np.int32, copy=False)),
            mx.array(chunk.attention_mask.astype(np.int32, copy=False)),
            mx.array(chunk.token_type_ids.astype(np.int32, copy=False)),
        )
        mx.eval(logits)  # MLX is lazy: run the graph before handing memory to numpy
        return np.array(logits, dtype=np.float32)

    def warmup(self, shapes: list[tuple[int, int]]) -> None:
        for rows, length in shapes:
            ids = np.ones((rows, length), dtype=np.int64)
            self.forward(Chunk(np.arange(rows), ids, ids, np.zeros_like(ids)))

    def memory(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, fn_name in (("mlx_active_mb", "get_active_memory"), ("mlx_peak_mb", "get_peak_memory")):
            fn = _memory_fn(fn_name)
            if fn is not None:
                out[key] = fn() / 2**20
        return out
