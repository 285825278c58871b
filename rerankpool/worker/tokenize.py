"""Tokenize (query, doc) pairs and plan padded chunks of similar length.

Shared by all engines. The fast ``tokenizers`` library does the work (truncation
``longest_first`` like transformers' ``tokenizer(q, d, truncation=True)``), and the
batch is sorted by real token length and cut into chunks so that padding stays small:
a batch that mixes short and long pairs runs as a few forward passes instead of one
padded to the longest pair. Engines that run packed tokens (``packed_bert``) get the
pairs back to back instead, with no padding to plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import itertools

import numpy as np

from rerankpool.worker.engines.base import Chunk, EncodedBatch, PackedChunk


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


def unpad(chunk: Chunk) -> PackedChunk:
    """A padded chunk's pairs with the padding stripped, back to back and sorted by length."""
    lengths = chunk.attention_mask.sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    return PackedChunk(
        rows=chunk.rows[order],
        input_ids=np.concatenate([chunk.input_ids[r, : lengths[r]] for r in order]),
        token_type_ids=np.concatenate([chunk.token_type_ids[r, : lengths[r]] for r in order]),
        lengths=lengths[order],
    )


class PairTokenizer:
    """Wraps a ``tokenizer.json`` for cross-encoder pairs: no padding, longest-first truncation."""

    def __init__(self, tokenizer_json: Path, max_length: int = 512) -> None:
        from tokenizers import Tokenizer

        self.max_length = max_length
        self._tok = Tokenizer.from_file(str(tokenizer_json))
        self._tok.no_padding()
        self._tok.enable_truncation(max_length, strategy="longest_first")
        self.pad_id = self._pad_id()

    def _pad_id(self) -> int:
        pad = self._tok.token_to_id("[PAD]")
        return 0 if pad is None else int(pad)

    def encode(
        self,
        queries: Sequence[str],
        query_index: Sequence[int],
        docs: Sequence[str],
        policy: ChunkPolicy = ChunkPolicy(),
    ) -> EncodedBatch:
        """Tokenize pairs (queries[query_index[i]], docs[i]) into length-sorted padded chunks."""
        encodings = self._tok.encode_batch([(queries[q], d) for q, d in zip(query_index, docs)])
        lengths = [len(e.ids) for e in encodings]
        batch = EncodedBatch(size=len(encodings))
        if policy.packed:
            for rows in plan_packed(lengths, policy.max_tokens):
                batch.chunks.append(
                    PackedChunk(
                        rows=rows,
                        input_ids=_concat(encodings[r].ids for r in rows),
                        token_type_ids=_concat(encodings[r].type_ids for r in rows),
                        lengths=np.asarray([lengths[r] for r in rows], dtype=np.int64),
                    )
                )
            return batch
        for rows in plan_chunks(lengths, policy):
            width = round_up(max(lengths[r] for r in rows), policy.pad_multiple)
            ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
            types = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for i, r in enumerate(rows):
                enc = encodings[r]
                n = lengths[r]
                ids[i, :n] = enc.ids
                types[i, :n] = enc.type_ids
                mask[i, :n] = 1
            batch.chunks.append(Chunk(rows=rows, input_ids=ids, attention_mask=mask, token_type_ids=types))
        return batch


def _concat(rows: Iterable[list[int]]) -> np.ndarray:
    return np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64)
