"""The engine interface every model runtime implements.

A worker runs each batch in three stages, as Infinity does: tokenize (shared by all
engines, see ``rerankpool.worker.tokenize``), ``forward`` on the device, and the scores
back as float32. Engines only implement the device part, so the tokenizer, the length
sorting and the padding plan are the same for PyTorch, MLX and ONNX Runtime (engines
that run packed tokens get ``PackedChunk``s, with no padding to plan), and scores can
be compared across engines pair for pair.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

DTYPES = ("float32", "float16", "bfloat16", "int8")


@dataclass(frozen=True)
class EngineConfig:
    """What a worker needs to load a model. Built from CLI flags."""

    model_path: Path
    engine: str = "torch"
    device: str = "cpu"
    dtype: str = "float32"
    max_length: int = 512
    threads: int | None = None  # intra-op threads; None lets the runtime decide
    compile: bool = False  # torch.compile / mx.compile where supported
    onnx_path: Path | None = None  # a ready ONNX file of this model, if one ships
    packed: bool | None = None  # torch: run BERT on packed tokens (None: on CUDA, where it pays)
    cuda_graphs: bool = True  # torch, packed on CUDA: replay small batches from CUDA graphs


@dataclass
class Chunk:
    """One padded forward pass: rows of the batch, sorted by length, padded to one length.

    ``rows`` indexes the batch's pairs, so scores can be scattered back to batch order.
    Arrays are int64 of shape [len(rows), padded_length].
    """

    rows: np.ndarray
    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray

    @property
    def padded_tokens(self) -> int:
        return int(self.input_ids.size)

    @property
    def real_tokens(self) -> int:
        return int(self.attention_mask.sum())


@dataclass
class PackedChunk:
    """One forward pass over packed tokens: the pairs back to back, no padding at all.

    ``lengths`` (ascending) gives each pair's token count; ``rows`` indexes the batch's
    pairs as in ``Chunk``. Token arrays are 1-D, ``sum(lengths)`` long. Only engines
    with ``packed = True`` receive these.
    """

    rows: np.ndarray
    input_ids: np.ndarray
    token_type_ids: np.ndarray
    lengths: np.ndarray
    computed_tokens: int | None = None  # set by an engine that pads it (a CUDA graph's capacity)

    @property
    def padded_tokens(self) -> int:
        return self.computed_tokens or int(self.input_ids.size)

    @property
    def real_tokens(self) -> int:
        return int(self.input_ids.size)


@dataclass
class EncodedBatch:
    """A tokenized batch, split into chunks of similar length."""

    size: int
    chunks: list[Chunk | PackedChunk] = field(default_factory=list)

    @property
    def real_tokens(self) -> int:
        return sum(c.real_tokens for c in self.chunks)

    @property
    def padded_tokens(self) -> int:
        return sum(c.padded_tokens for c in self.chunks)

    def pair_tokens(self) -> np.ndarray:
        """Each pair's token count, in batch order: what the requests' usage is charged."""
        tokens = np.zeros(self.size, dtype=np.int32)
        for c in self.chunks:
            tokens[c.rows] = c.lengths if isinstance(c, PackedChunk) else c.attention_mask.sum(axis=1)
        return tokens


@runtime_checkable
class Engine(Protocol):
    """A loaded model on one device. ``forward`` returns raw logits, float32, shape [n].

    An engine that sets ``packed = True`` is given ``PackedChunk``s instead of ``Chunk``s.
    """

    name: str
    device: str
    dtype: str

    def forward(self, chunk: Chunk | PackedChunk) -> np.ndarray: ...

    def warmup(self, shapes: list[tuple[int, int]]) -> None:
        """Run once per (batch, length) shape so first requests don't pay compile costs."""
        ...

    def memory(self) -> dict[str, float]:
        """Allocator memory in MB (empty when the runtime has none to report)."""
        ...


def run_batch(engine: Engine, batch: EncodedBatch) -> np.ndarray:
    """Run every chunk and scatter the scores back to batch order."""
    scores = np.empty(batch.size, dtype=np.float32)
    for chunk in batch.chunks:
        scores[chunk.rows] = engine.forward(chunk)
    return scores


class EngineLoadError(RuntimeError):
    """The model could not be loaded by the chosen engine; the message says what to do."""


class EngineGone(RuntimeError):
    """The engine can run nothing more (its device process died): the worker exits and is restarted."""
