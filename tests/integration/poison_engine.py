"""A fault-injection engine for tests: the torch engine, except on pairs with the word "poison".

Loaded by workers as ``--engine tests.integration.poison_engine:PoisonEngine``.
POISON_MODE=raise makes the forward pass raise; POISON_MODE=exit kills the process.
"""

from __future__ import annotations

import os

import numpy as np
from tokenizers import Tokenizer

from rerankpool.worker.engines.base import Chunk, EngineConfig
from rerankpool.worker.engines.torch_engine import TorchEngine


class PoisonEngine(TorchEngine):
    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self.poison_id = Tokenizer.from_file(str(config.model_path / "tokenizer.json")).token_to_id("poison")
        self.mode = os.environ.get("POISON_MODE", "raise")

    def forward(self, chunk: Chunk) -> np.ndarray:
        if (chunk.input_ids == self.poison_id).any():
            if self.mode == "exit":
                os._exit(17)
            raise ValueError("poisoned input")
        return super().forward(chunk)
