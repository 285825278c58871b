"""Tokenize (query, doc) pairs into padded chunks of similar length (or packed ones).

Shared by all engines. ``tokenizers`` (with flash-tokenizer for plain BERT vocabularies,
see ``rerankpool.worker.wordpiece``) does the work, truncating ``longest_first`` like
transformers' ``tokenizer(q, d, truncation=True)``. The batch is sorted by real token
length and cut into chunks so that padding stays small: a batch that mixes short and
long pairs runs as a few forward passes instead of one padded to the longest pair (how
it is cut, per runtime: ``rerankpool.worker.policy``). Engines that run packed tokens
(``packed_encoder``) get the pairs back to back instead, with no padding to plan.

A request may set its own truncation (``protocol.Truncation``: TEI's ``truncate`` and
``truncation_direction``, Cohere's ``max_tokens_per_doc``). Its pairs are then encoded by
``tokenizers`` with those settings, group by group (``PairTokenizer._encode_cut``); a pair too
long for a request that forbids cutting is still encoded (cut, so the batch runs) and reported
in ``EncodedBatch.refused``, so that the broker answers its request ``too_large``.

A batch may name documents to split for chunked scoring (``protocol.Chunking``): those
longer than a window beside their query are cut into windows (``rerankpool.worker.windows``)
by the model's own tokenizer and left out of the chunks; ``EncodedBatch.windows`` gives their
spans, and the broker queues each window as a pair of its own.

LLM rerankers (``rerankpool.models.llm``) are tokenized in prompt mode (``PromptTokenizer``):
each pair is written into its family's prompt template and truncated as the model card's
code does, and the ids go into the same right-padded, length-sorted chunks (token type 0).
``load_pair_tokenizer`` picks the mode from the checkpoint's config.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from abc import ABC, abstractmethod
from typing import Any, Sequence

import itertools

import numpy as np

from rerankpool.models.llm import LlmReranker, llm_reranker
from rerankpool.protocol import DEFAULT_TRUNCATION, Chunking, Truncation
from rerankpool.worker.engines.base import Chunk, EncodedBatch, PackedChunk
from rerankpool.worker.policy import ChunkPolicy, plan_chunks, plan_packed, round_up
from rerankpool.worker.windows import Window, plan_windows
from rerankpool.worker.wordpiece import TextIds, load_fast_wordpiece, ragged_take


def _as_transformers_builds_it(model_dir: Path):
    """The ``tokenizers`` pipeline transformers builds for a checkpoint, or None without transformers."""
    try:
        from transformers import AutoTokenizer
    except ImportError:  # a worker without the torch extra reads tokenizer.json as written
        return None
    return AutoTokenizer.from_pretrained(str(model_dir)).backend_tokenizer


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


class BatchTokenizer(ABC):
    """What both tokenizers share: ``encode`` of a batch, and the cutting of long documents into windows.

    A subclass gives ``_encode`` (a batch with no document to split), ``_plain`` (its tokenizer
    with no truncation, for a document's own tokens) and ``_overhead`` (a pair's tokens besides
    its document's).
    """

    max_length: int

    def encode(
        self,
        queries: Sequence[str],
        query_index: Sequence[int],
        docs: Sequence[str],
        policy: ChunkPolicy = ChunkPolicy(),
        truncations: Sequence[Truncation] | None = None,
        split: dict[int, Chunking] | None = None,
    ) -> EncodedBatch:
        """Tokenize pairs (queries[query_index[i]], docs[i]) into length-sorted chunks; ``truncations``: each
        pair's request's settings (None: every pair takes the defaults); ``split``: the docs to cut into
        windows if longer than one (they go in ``windows``, not in the chunks)."""
        if not split:
            return self._encode(queries, query_index, docs, policy, truncations)
        windows = self._windows(queries, query_index, docs, split, truncations)
        keep = np.array([i for i in range(len(docs)) if i not in windows], dtype=np.int64)
        batch = self._encode(queries, [query_index[i] for i in keep], [docs[i] for i in keep], policy,
                             None if truncations is None else [truncations[i] for i in keep])
        for chunk in batch.chunks:  # back under their batch rows
            chunk.rows = keep[chunk.rows]
        batch.size = len(docs)
        batch.refused = {int(keep[i]): reason for i, reason in batch.refused.items()}
        batch.windows = windows
        return batch

    def _windows(self, queries: Sequence[str], query_index: Sequence[int], docs: Sequence[str],
                 split: dict[int, Chunking], truncations: Sequence[Truncation] | None) -> dict[int, list[Window]]:
        """The windows of the docs to split that are longer than a window beside their query. A request's
        ``max_tokens_per_doc`` cuts the document first (its first or last tokens), as for a pair scored whole."""
        plain = self._plain()
        windows: dict[int, list[Window]] = {}
        for i, chunking in split.items():
            extra = self._overhead(queries[query_index[i]])
            fit = self.max_length - extra
            width = min(chunking.window_tokens or fit, fit)
            if width < 8:  # the query leaves no room for a window: the pair is cut as any other
                continue
            doc = plain.encode(docs[i], add_special_tokens=False)
            offsets, word_ids = doc.offsets, doc.word_ids
            cut = None if truncations is None else truncations[i]
            if cut is not None and cut.max_tokens_per_doc is not None and len(offsets) > cut.max_tokens_per_doc:
                kept = slice(-cut.max_tokens_per_doc, None) if cut.direction == "left" else \
                    slice(cut.max_tokens_per_doc)
                offsets, word_ids = offsets[kept], word_ids[kept]
            if len(offsets) > width:
                windows[i] = plan_windows(offsets, word_ids, width, chunking.overlap_tokens, chunking.max_windows,
                                          extra)
        return windows

    @abstractmethod
    def _encode(self, queries: Sequence[str], query_index: Sequence[int], docs: Sequence[str],
                policy: ChunkPolicy, truncations: Sequence[Truncation] | None) -> EncodedBatch: ...

    @abstractmethod
    def _plain(self) -> Any: ...

    @abstractmethod
    def _overhead(self, query: str) -> int: ...


class PairTokenizer(BatchTokenizer):
    """Tokenizes cross-encoder pairs from a ``tokenizer.json``: no padding, longest-first truncation.

    For plain BERT tokenizers (``rerankpool.worker.wordpiece``) each query and document is
    encoded once on its own, by flash-tokenizer where it gives the same ids, and the pairs
    are put together here as ``[CLS] q [SEP] d [SEP]``, truncated as ``tokenizers`` does.
    Other tokenizers encode the pairs with ``tokenizers`` itself, through the pipeline that
    transformers builds for the checkpoint where transformers is installed (for XLM-R and
    DeBERTa-v3 it rebuilds the normalizer and pre-tokenizer rather than use the file's, and
    CrossEncoder tokenizes with that). Both give the reference's ids.
    """

    def __init__(self, tokenizer_json: Path, max_length: int = 512, fast: bool = True,
                 threads: int | None = None, truncate: bool = True) -> None:
        from tokenizers import Tokenizer

        self.max_length = max_length
        self.truncate = truncate  # the default of requests that do not say (the workers' --truncate)
        self._tok = Tokenizer.from_file(str(tokenizer_json))
        if self._tok.model.__class__.__name__ != "WordPiece":
            self._tok = _as_transformers_builds_it(Path(tokenizer_json).parent) or self._tok
        self._tok.no_padding()
        self._cut = Tokenizer.from_str(self._tok.to_str())  # reconfigured per request's truncation
        self._tok.enable_truncation(max_length, strategy="longest_first")
        self.pad_id = self._pad_id()
        self._words = load_fast_wordpiece(tokenizer_json, threads) if fast else None
        if self._words is not None and max_length < 4:
            raise ValueError(f"max_length {max_length} leaves no room for a pair besides [CLS], [SEP], [SEP]")

    @property
    def backend(self) -> str:
        """Which library tokenizes (reports and logs say so)."""
        return "flash-tokenizer+tokenizers" if self._words is not None else "tokenizers"

    def _pad_id(self) -> int:
        pad = self._tok.token_to_id("[PAD]")
        return 0 if pad is None else int(pad)

    def _plain(self) -> Any:
        self._cut.no_truncation()
        return self._cut

    def _overhead(self, query: str) -> int:
        plain = self._plain()
        return len(plain.encode(query, add_special_tokens=False).ids) + plain.num_special_tokens_to_add(True)

    def _encode(self, queries: Sequence[str], query_index: Sequence[int], docs: Sequence[str], policy: ChunkPolicy,
                truncations: Sequence[Truncation] | None) -> EncodedBatch:
        if truncations is not None or not self.truncate:
            return self._encode_cut(queries, query_index, docs, policy,
                                    truncations or [DEFAULT_TRUNCATION] * len(docs))
        if self._words is not None:
            pairs = self._pairs_from_texts(queries, query_index, docs)
        else:
            pairs = _pair_ids(self._tok.encode_batch([(queries[q], d) for q, d in zip(query_index, docs)]))
        return _chunks(pairs, policy, self.pad_id)

    def _encode_cut(self, queries: Sequence[str], query_index: Sequence[int], docs: Sequence[str],
                    policy: ChunkPolicy, truncations: Sequence[Truncation]) -> EncodedBatch:
        """Pairs under their requests' own truncation, encoded by ``tokenizers`` group by group of settings.

        ``max_tokens_per_doc`` cuts the document's text at that token's character offset (from
        the start, or from the end with ``direction="left"``) before the pair is encoded; then the
        pair is fitted to the window longest-first from the right or the left, as ``tokenizers``
        (and so TEI) does. A pair that would need cutting when its request forbids it is encoded
        cut all the same and named in ``refused``, with its length.
        """
        texts = [(queries[q], d) for q, d in zip(query_index, docs)]
        encodings: list = [None] * len(texts)
        refused: dict[int, str] = {}
        groups: dict[Truncation, list[int]] = {}
        for i, t in enumerate(truncations):
            groups.setdefault(t, []).append(i)
        tok = self._cut
        for t, rows in groups.items():
            direction = t.direction
            group = [texts[i] for i in rows]
            if t.max_tokens_per_doc is not None:
                group = [(q, _cut_text(tok, d, t.max_tokens_per_doc, direction)) for q, d in group]
            if not (self.truncate if t.truncate is None else t.truncate):
                tok.no_truncation()
                for i, e in zip(rows, tok.encode_batch(group)):
                    if len(e.ids) > self.max_length:
                        refused[i] = f"{len(e.ids)} tokens with its query; the model's window is {self.max_length}"
            tok.enable_truncation(self.max_length, strategy="longest_first", direction=direction)
            for i, e in zip(rows, tok.encode_batch(group)):
                encodings[i] = e
        batch = _chunks(_pair_ids(encodings), policy, self.pad_id)
        batch.refused = refused
        return batch

    def _pairs_from_texts(self, queries: Sequence[str], query_index: Sequence[int], docs: Sequence[str]) -> PairIds:
        """Each text encoded once, then ``[CLS] q [SEP] d [SEP]`` per pair, cut to ``max_length``."""
        assert self._words is not None
        texts = self._words.encode([*queries, *docs])  # one call: one burst of the thread pool
        qi = np.asarray(query_index, dtype=np.int64)
        d = np.arange(len(queries), len(queries) + len(docs))
        nq, nd = longest_first(texts.lengths[qi], texts.lengths[d], self.max_length - 3)
        # One array holds every token a pair needs: the texts', then [CLS] and [SEP].
        cls_at, sep_at = len(texts.flat), len(texts.flat) + 1
        pool = np.concatenate([texts.flat, [self._words.spec.cls_id, self._words.spec.sep_id]])
        ones = np.ones_like(nq)
        starts = np.stack([ones * cls_at, texts.starts[qi], ones * sep_at, texts.starts[d], ones * sep_at], 1)
        lengths = np.stack([ones, nq, ones, nd, ones], 1)
        pair_lengths = nq + nd + 3
        flat = ragged_take(pool, starts.ravel(), lengths.ravel())
        return PairIds(TextIds(flat, np.cumsum(pair_lengths) - pair_lengths, pair_lengths), nq + 2)


class PromptTokenizer(BatchTokenizer):
    """Tokenizes pairs for an LLM reranker: its prompt template around each pair, truncated as its card does.

    Same interface as ``PairTokenizer``; every token has type 0, and ``max_length`` is the
    model card's ``max_length`` (see the template for what it bounds).
    """

    backend = "tokenizers (LLM prompt)"

    def __init__(self, tokenizer_json: Path, reranker: LlmReranker, max_length: int = 512,
                 truncate: bool = True) -> None:
        from tokenizers import Tokenizer

        self.max_length = max_length
        self.truncate = truncate
        self.reranker = reranker
        self._tok = Tokenizer.from_file(str(tokenizer_json))
        self._tok.no_padding()
        self._tok.no_truncation()
        self.pad_id = 0  # any id: pads follow a pair's tokens, and causal attention never looks ahead
        reranker.pair_ids(self._tok, [("", "")], max_length)  # fails now if max_length leaves no room

    def _plain(self) -> Any:
        return self._tok

    def _overhead(self, query: str) -> int:
        """The prompt's tokens with the query and no document: what a window's budget leaves out."""
        return len(self.reranker.pair_ids(self._tok, [(query, "")], 1 << 30)[0])

    def _encode(self, queries: Sequence[str], query_index: Sequence[int], docs: Sequence[str], policy: ChunkPolicy,
                truncations: Sequence[Truncation] | None) -> EncodedBatch:
        """The card cuts the formatted pair from its end. ``max_tokens_per_doc`` cuts a document to its first
        tokens before it goes into the prompt; a request that forbids cutting gets its too-long pairs ``refused``,
        and so does one that asks to cut from the left: the cards define no such cut."""
        cuts = truncations or [DEFAULT_TRUNCATION] * len(docs)
        pairs = [(queries[q], d if t.max_tokens_per_doc is None else _cut_text(self._tok, d, t.max_tokens_per_doc))
                 for q, d, t in zip(query_index, docs, cuts)]
        ids = back_to_back(self.reranker.pair_ids(self._tok, pairs, self.max_length))
        batch = _chunks(PairIds(ids, ids.lengths), policy, self.pad_id)
        if truncations is None and self.truncate:
            return batch
        for i, t in enumerate(cuts):
            if t.direction != "right":
                batch.refused[i] = "LLM rerankers cut a pair only from its end, as their model cards do"
            elif not (self.truncate if t.truncate is None else t.truncate):
                (full,) = self.reranker.pair_ids(self._tok, [pairs[i]], 1 << 30)
                if len(full) > self.max_length:
                    batch.refused[i] = f"{len(full)} tokens in its prompt; the model's window is {self.max_length}"
        return batch


def load_pair_tokenizer(model_path: Path, max_length: int = 512, fast: bool = True, threads: int | None = None,
                        instruction: str | None = None, truncate: bool = True) -> BatchTokenizer:
    """The checkpoint's tokenizer: prompt mode for an LLM reranker, else cross-encoder pairs. ``truncate``: the
    default of requests that do not say whether a pair past the window may be cut."""
    reranker = llm_reranker(model_path, instruction)
    if reranker is not None:
        return PromptTokenizer(Path(model_path) / "tokenizer.json", reranker, max_length, truncate)
    if instruction is not None:
        raise ValueError(f"an instruction is for LLM rerankers; {model_path} is a cross-encoder")
    return PairTokenizer(Path(model_path) / "tokenizer.json", max_length, fast=fast, threads=threads,
                         truncate=truncate)


def _cut_text(tok, doc: str, max_tokens: int, direction: str = "right") -> str:
    """``doc`` cut to its first (``direction`` "right") or last ("left") ``max_tokens`` tokens, at their
    character offsets: the text those tokens came from."""
    tok.no_truncation()
    offsets = [o for o in tok.encode(doc, add_special_tokens=False).offsets]
    if len(offsets) <= max_tokens:
        return doc
    return doc[: offsets[max_tokens - 1][1]] if direction == "right" else doc[offsets[-max_tokens][0]:]


def _pair_ids(encodings) -> "PairIds":
    """``tokenizers`` pair encodings as one flat run of ids, with how many of each pair lead with token type 0."""
    ids = back_to_back([e.ids for e in encodings])
    first = ids.lengths - np.fromiter((sum(e.type_ids) for e in encodings), dtype=np.int64, count=len(encodings))
    return PairIds(ids, first)


@dataclass
class PairIds:
    """Every pair's ids back to back in batch order, and how many lead the pair with token type 0."""

    ids: TextIds
    first: np.ndarray


def back_to_back(ids: Sequence[Sequence[int]]) -> TextIds:
    """Several id lists as one flat array, with where each starts and how long it is."""
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
    return TextIds(flat, np.cumsum(lengths) - lengths, lengths)


def longest_first(n_first: np.ndarray, n_second: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """How many tokens of each text to keep, as ``tokenizers``' ``longest_first`` truncation keeps.

    The shorter text keeps all it can up to half the budget; the longer one takes the rest.
    """
    n1, n2 = np.asarray(n_first, dtype=np.int64), np.asarray(n_second, dtype=np.int64)
    short = np.minimum(n1, n2)
    long_kept = np.where(short > budget, short, np.maximum(short, budget - short))
    halves = short + long_kept > budget
    short_kept = np.where(halves, budget // 2, short)
    long_kept = np.where(halves, budget // 2 + budget % 2, long_kept)
    over = n1 + n2 > budget
    first_longer = n1 > n2
    return (np.where(over, np.where(first_longer, long_kept, short_kept), n1),
            np.where(over, np.where(first_longer, short_kept, long_kept), n2))


def _chunks(pairs: PairIds, policy: ChunkPolicy, pad_id: int) -> EncodedBatch:
    """Pairs' ids into the chunks the policy asks for: packed back to back, or padded rows."""
    lengths, ids = pairs.ids.lengths, pairs.ids
    batch = EncodedBatch(size=len(lengths))
    plan = plan_packed(lengths, policy.max_tokens) if policy.packed else plan_chunks(lengths, policy)
    for rows in plan:
        lens, heads = lengths[rows], pairs.first[rows]
        flat = ragged_take(ids.flat, ids.starts[rows], lens)
        segments = np.stack([heads, lens - heads], 1).ravel()
        types = np.repeat(np.tile(np.array([0, 1], dtype=np.int64), len(rows)), segments)
        if policy.packed:
            batch.chunks.append(PackedChunk(rows=rows, input_ids=flat, token_type_ids=types, lengths=lens))
            continue
        width = round_up(int(lens.max()), policy.pad_multiple)
        mask = np.arange(width) < lens[:, None]
        input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
        token_types = np.zeros((len(rows), width), dtype=np.int64)
        input_ids[mask] = flat
        token_types[mask] = types
        batch.chunks.append(Chunk(rows=rows, input_ids=input_ids, attention_mask=mask.astype(np.int64),
                                  token_type_ids=token_types))
    return batch
