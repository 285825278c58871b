"""A no-op engine: no model, deterministic scores from the token ids.

It measures the broker and wire overhead without a model in the way, and its scores
depend on each pair's exact tokens, so a mixed-up reassembly shows up in tests.
"""

from __future__ import annotations

import numpy as np

from rerankpool.worker.engines.base import Chunk, Engine, EngineConfig


def null_scores(chunk: Chunk) -> np.ndarray:
    weights = np.arange(1, chunk.input_ids.shape[1] + 1, dtype=np.int64)
    checksum = (chunk.input_ids * chunk.attention_mask * weights).sum(axis=1)
    return ((checksum % 100_003) / 1000.0).astype(np.float32)


class NullEngine(Engine):
    name = "null"

    def __init__(self, config: EngineConfig) -> None:
        self.device = "cpu"
        self.dtype = "float32"

    def forward(self, chunk: Chunk) -> np.ndarray:
        return null_scores(chunk)

    def warmup(self, shapes: list[tuple[int, int]]) -> None:
        return None

    def memory(self) -> dict[str, float]:
        return {}
