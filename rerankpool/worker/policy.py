"""How a batch is cut into forward passes: the chunk policy, the policy per runtime, and the planners.

The tokenizer (``rerankpool.worker.tokenize``) sorts a batch by length and cuts it as the
policy says; engines that group packed pairs for attention (``packed_encoder``) use the same
planner. This module imports nothing of the worker's, so both can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class ChunkPolicy:
    """How a length-sorted batch is cut into forward passes.

    One more forward pass costs about ``overhead_tokens`` padded tokens of compute (launch
    and Python overhead: a few tokens on a CPU, thousands on a GPU running eager PyTorch).
    A chunk is closed before a pair whose length would add more padding than that, or
    would take the chunk past ``max_tokens``. ``pad_multiple`` rounds padded lengths up,
    so compiled runtimes see few distinct shapes.
    """

    overhead_tokens: int = 32
    max_tokens: int | None = None
    pad_multiple: int = 1
    packed: bool = False  # packed chunks (no padding), cut only by ``max_tokens`` of real tokens


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def plan_packed(lengths: Sequence[int], max_tokens: int | None) -> list[np.ndarray]:
    """Rows sorted by length, cut so that no chunk holds more than ``max_tokens`` tokens."""
    lens = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(lens, kind="stable")
    if max_tokens is None or not len(order):
        return [order] if len(order) else []
    chunks: list[np.ndarray] = []
    start = used = 0
    for pos, row in enumerate(order):
        if pos > start and used + lens[row] > max_tokens:
            chunks.append(order[start:pos])
            start, used = pos, 0
        used += int(lens[row])
    chunks.append(order[start:])
    return chunks


def plan_chunks(lengths: Sequence[int], policy: ChunkPolicy = ChunkPolicy()) -> list[np.ndarray]:
    """Split rows into chunks of similar length; returns row indices, sorted by length."""
    lens = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(lens, kind="stable")
    chunks: list[np.ndarray] = []
    start = 0
    width = 0
    for pos, row in enumerate(order):
        length = round_up(int(lens[row]), policy.pad_multiple)
        rows = pos - start
        if rows:
            extra_padding = rows * (length - width)
            too_big = policy.max_tokens is not None and (rows + 1) * length > policy.max_tokens
            if extra_padding > policy.overhead_tokens or too_big:
                chunks.append(order[start:pos])
                start = pos
        width = length
    if len(order) > start:
        chunks.append(order[start:])
    return chunks


# How batches are cut into padded chunks, per runtime. On CPU, exact lengths and small
# chunks cost least. On a GPU a launch costs more than a few padded tokens: bigger chunks,
# lengths rounded to 8. MLX compiles a graph per shape: few shapes.
CHUNK_POLICIES = {
    "cpu": ChunkPolicy(overhead_tokens=32),
    "cuda": ChunkPolicy(overhead_tokens=8192, pad_multiple=8),
    "mps": ChunkPolicy(overhead_tokens=2048, pad_multiple=16),
    "mlx": ChunkPolicy(overhead_tokens=1024, pad_multiple=16),
}
# Engines that run packed tokens have no padding to plan: a pass holds at most this many
# tokens, which bounds activation memory (MiniLM-L12, fp16: ~0.4 GB at 64k tokens).
PACKED_POLICY = ChunkPolicy(packed=True, max_tokens=65_536)


def warmup_shapes(policy: ChunkPolicy, max_length: int) -> list[tuple[int, int]]:
    """(rows, length) shapes to run once at start, so first requests don't pay for new shapes."""
    multiple = policy.pad_multiple
    lengths = sorted({max(multiple, (n // multiple) * multiple) for n in (32, 64, 128, 256)})
    shapes = [(8, n) for n in lengths if n <= max_length]
    if policy.packed:  # packed passes vary in total tokens: warm the kernels for large ones too
        shapes += [(rows, 128) for rows in (64, 256, 512)]
    return shapes
