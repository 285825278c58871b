"""The engine interface every model runtime implements.

A worker runs each batch in three stages, as Infinity does: tokenize (shared by all
engines, see ``rerankpool.worker.tokenize``), ``forward`` on the device, and the scores
back as float32. Engines only implement the device part, so the tokenizer, the length
sorting and the padding plan are the same for PyTorch, MLX and ONNX Runtime (engines
that run packed tokens get ``PackedChunk``s, with no padding to plan), and scores can
be compared across engines pair for pair.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    that declare ``Engine.packed`` receive these.
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
    refused: dict[int, str] = field(default_factory=dict)  # pairs too long for a request that forbade cutting
    windows: dict[int, list[tuple[int, int, int]]] = field(default_factory=dict)  # split docs, in no chunk

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


class Engine(ABC):
    """A loaded model on one device: every engine subclasses this, and declares here what it can do.

    An engine sets ``name``, ``device`` and ``dtype`` and implements ``forward`` (raw
    logits, float32, shape [n]), ``warmup`` and ``memory``. What more it can do, callers
    read from these declarations (they never probe an engine for methods):

    - ``packed``: it takes ``PackedChunk``s (pairs back to back, no padding) instead of
      ``Chunk``s. False unless an engine says so, on its class or, when it depends on the
      model and device, on the instance.
    - starting a pass without waiting for it: such an engine subclasses ``AsyncEngine``.
    """

    name: str
    device: str
    dtype: str
    packed: bool = False

    @abstractmethod
    def forward(self, chunk: Chunk | PackedChunk) -> np.ndarray:
        """Raw logits for the chunk's rows, float32, shape [len(chunk.rows)]."""

    @abstractmethod
    def warmup(self, shapes: list[tuple[int, int]]) -> None:
        """Run once per (batch, length) shape so first requests don't pay compile costs."""

    @abstractmethod
    def memory(self) -> dict[str, float]:
        """Allocator memory in MB (empty when the runtime has none to report)."""


class AsyncEngine(Engine):
    """An engine that can start a forward pass and wait for it later (torch: the kernels are queued).

    The device process keeps up to two passes in flight with such an engine, launching the
    next while the device still runs the last; with any other engine it runs each pass to
    the end (``forward``) before it takes the next. ``forward`` is ``collect(launch(chunk))``.
    """

    def forward(self, chunk: Chunk | PackedChunk) -> np.ndarray:
        return self.collect(self.launch(chunk))

    @abstractmethod
    def launch(self, chunk: Chunk | PackedChunk) -> Any:
        """Start the chunk's pass; returns what ``collect`` and ``running`` take."""

    @abstractmethod
    def collect(self, pending: Any) -> np.ndarray:
        """Wait for a launched pass; its scores, as ``forward`` returns them."""

    def running(self, pending: Any) -> bool:
        """True while a launched pass is still running and worth not waiting for (the caller does other work).

        By default False: the caller waits in ``collect``.
        """
        return False


def run_batch(engine: Engine, batch: EncodedBatch) -> np.ndarray:
    """Run every chunk and scatter the scores back to batch order (0 for pairs in no chunk: split documents)."""
    scores = np.zeros(batch.size, dtype=np.float32)
    for chunk in batch.chunks:
        scores[chunk.rows] = engine.forward(chunk)
    return scores


class EngineLoadError(RuntimeError):
    """The model could not be loaded by the chosen engine; the message says what to do."""


class EngineGone(RuntimeError):
    """The engine can run nothing more (its device process died): the worker exits and is restarted."""
