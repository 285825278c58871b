"""Length-bucketed dynamic batching. Pure logic: no sockets, an injected clock.

Pairs are placed in buckets by an estimate of their token length (characters / 4.5,
measured on SQuAD: English WordPiece averages ~4.8 characters per token, so the
estimate errs long). A batch never mixes buckets unless a worker would otherwise idle,
so padding stays small without tokenizing in the broker.

When is a bucket shipped? (``BrokerCore.dispatch`` in ``core.py`` applies this rule.)

* Full: it holds ``max_batch`` pairs or ``max_batch_tokens`` tokens, as the workers pay
  for them: a padded worker pays ``edge x n`` (every pair padded to the bucket's edge), a
  worker that packs its tokens (``WorkerInfo.packed``) pays the sum of their lengths, as
  TEI's queue prices them. While every live worker packs, padding costs nothing, so the
  queue is one bucket and the limits are the packed ones (256 pairs, 131,072 tokens).
* Due: its oldest pair has waited ``timeout_ms``.
* Idle worker: a worker with nothing in flight takes the best batch there is *now*
  (``pop_any``), even a partial one, merged across buckets. When several workers are
  idle, a small queue is shared among them: each takes max(``split_min``, queue / idle
  workers) pairs, the last what is left, so a lone request is tokenized and run by several workers at once.

At low load a worker is idle when a request arrives, so it is served at once. At
high load every worker already has a batch running, so pairs collect until buckets
are full or due: batches grow with load, and latency is bounded by the timeout.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Hashable, Iterable

from rerankpool.protocol import DEFAULT_TRUNCATION, Chunking, Truncation

DEFAULT_BUCKET_EDGES = (32, 48, 64, 80, 96, 128, 160, 192, 256, 320, 384, 512)
CHARS_PER_TOKEN = 4.5
SPECIAL_TOKENS = 3  # [CLS] query [SEP] doc [SEP]


def estimate_tokens(query: str, doc: str, max_length: int = 512, max_doc_tokens: int | None = None) -> int:
    """A cheap upper-leaning estimate of a pair's token count, without a tokenizer (the document cut to
    ``max_doc_tokens`` first, when a request asks for that)."""
    doc_tokens = len(doc) / CHARS_PER_TOKEN
    if max_doc_tokens is not None:
        doc_tokens = min(doc_tokens, max_doc_tokens)
    return min(max_length, int(len(query) / CHARS_PER_TOKEN + doc_tokens) + SPECIAL_TOKENS)


PADDED_LIMITS = (64, 16_384)  # pairs, tokens (edge x n) per batch for workers that pad
PACKED_LIMITS = (256, 131_072)  # pairs, tokens (their sum) per batch for workers that pack


@dataclass(frozen=True)
class BatchingConfig:
    max_batch: int | None = None  # pairs per batch at most; None: by the workers' kind (PADDED/PACKED_LIMITS)
    max_batch_tokens: int | None = None  # tokens per batch at most, as the workers pay for them; None: likewise
    timeout_ms: float = 5.0
    bucket_edges: tuple[int, ...] = DEFAULT_BUCKET_EDGES
    split_min: int = 16  # idle workers share a small queue, each taking >= this many pairs but the last (0: never)

    def __post_init__(self) -> None:
        if (self.max_batch is not None and self.max_batch < 1) or (
                self.max_batch_tokens is not None and self.max_batch_tokens < 1):
            raise ValueError("max_batch and max_batch_tokens must be >= 1")
        if self.split_min < 0:
            raise ValueError("split_min must be >= 0")
        if self.timeout_ms < 0:
            raise ValueError("timeout_ms must be >= 0")
        edges = self.bucket_edges
        if not edges or any(b <= a for a, b in zip(edges, edges[1:])) or edges[0] < 1:
            raise ValueError(f"bucket edges must be positive and strictly increasing, got {edges}")

    def limits(self, packed: bool) -> tuple[int, int]:
        """(pairs, tokens) per batch: the ones set, else the defaults of padded or packed workers."""
        pairs, tokens = PACKED_LIMITS if packed else PADDED_LIMITS
        return self.max_batch or pairs, self.max_batch_tokens or tokens


@dataclass(eq=False)
class Pair:
    """One (query, doc) pair of a request, as queued. ``key`` names its request."""

    key: Hashable
    index: int
    query: str
    doc: str
    tokens: int
    enqueued_at: float = 0.0
    failures: int = 0  # batches holding this pair that failed or died with their worker
    truncation: Truncation = DEFAULT_TRUNCATION  # its request's
    chunking: Chunking | None = None  # a document a worker splits into windows if it is longer than one
    window: tuple[int, int, int] | None = None  # a window of document ``index``: [start, end) characters, its number


@dataclass
class Bucket:
    edge: int
    pairs: deque[Pair] = field(default_factory=deque)
    tokens: int = 0  # the estimated tokens of the pairs it holds

    def push(self, pair: Pair, front: bool = False) -> None:
        (self.pairs.appendleft if front else self.pairs.append)(pair)
        self.tokens += pair.tokens

    def pop(self) -> Pair:
        pair = self.pairs.popleft()
        self.tokens -= pair.tokens
        return pair

    def oldest(self) -> float:
        return self.pairs[0].enqueued_at


class Batcher:
    """Holds queued pairs in length buckets and cuts them into batches.

    ``is_live(key)`` lets the batcher drop pairs whose request has already ended
    (timed out, failed, client gone) before they cost compute.
    """

    def __init__(self, config: BatchingConfig, is_live: Callable[[Hashable], bool] | None = None) -> None:
        self.config = config
        self._is_live = is_live or (lambda key: True)
        self._buckets = [Bucket(edge) for edge in config.bucket_edges]
        self._count = 0
        self.packed = False
        self.max_pairs, self.max_tokens = config.limits(packed=False)

    def __len__(self) -> int:
        return self._count

    def set_packed(self, packed: bool) -> None:
        """Price batches for workers that pack (sum of lengths, one bucket) or pad (``edge x n``)."""
        self.packed = packed
        self.max_pairs, self.max_tokens = self.config.limits(packed)

    def cost(self, pair: Pair, bucket: Bucket) -> int:
        """What a pair costs a worker: its tokens when it packs, its bucket's edge when it pads."""
        return pair.tokens if self.packed else bucket.edge

    def bucket_for(self, tokens: int) -> Bucket:
        if self.packed:  # no padding to save: one queue, the largest bucket
            return self._buckets[-1]
        for bucket in self._buckets:
            if tokens <= bucket.edge:
                return bucket
        return self._buckets[-1]

    def add(self, pairs: Iterable[Pair], now: float) -> None:
        for pair in pairs:
            pair.enqueued_at = now
            self.bucket_for(pair.tokens).push(pair)
            self._count += 1

    def requeue(self, pairs: Iterable[Pair]) -> None:
        """Put pairs back at the front of their buckets (a dead worker's batch), keeping their age."""
        for pair in reversed(list(pairs)):
            self.bucket_for(pair.tokens).push(pair, front=True)
            self._count += 1

    def _take(self, bucket: Bucket, limit_pairs: int, limit_tokens: int, out: list[Pair]) -> int:
        """Move live pairs from a bucket into ``out`` within the limits; returns tokens used."""
        used = 0
        while bucket.pairs and len(out) < limit_pairs:
            pair = bucket.pairs[0]
            if not self._is_live(pair.key):
                bucket.pop()
                self._count -= 1
                continue
            cost = self.cost(pair, bucket)
            if out and used + cost > limit_tokens:
                break
            bucket.pop()
            self._count -= 1
            out.append(pair)
            used += cost
        return used

    def _prune_head(self, bucket: Bucket) -> None:
        while bucket.pairs and not self._is_live(bucket.pairs[0].key):
            bucket.pop()
            self._count -= 1

    def _is_full(self, bucket: Bucket) -> bool:
        n = len(bucket.pairs)
        tokens = bucket.tokens if self.packed else n * bucket.edge
        return n >= self.max_pairs or tokens >= self.max_tokens

    def pop_due(self, now: float) -> list[Pair] | None:
        """A full bucket's batch, else the batch of the most overdue bucket, else None."""
        timeout_s = self.config.timeout_ms / 1000.0
        overdue: Bucket | None = None
        for bucket in self._buckets:
            self._prune_head(bucket)
            if not bucket.pairs:
                continue
            if self._is_full(bucket):
                return self._cut(bucket)
            if now >= bucket.oldest() + timeout_s and (overdue is None or bucket.oldest() < overdue.oldest()):
                overdue = bucket
        return self._cut(overdue) if overdue is not None else None

    def pop_any(self, now: float, max_pairs: int | None = None) -> list[Pair] | None:
        """For an idle worker: the oldest bucket's pairs, topped up from other buckets, oldest first."""
        limit = self.max_pairs if max_pairs is None else min(max_pairs, self.max_pairs)
        for bucket in self._buckets:
            self._prune_head(bucket)
        ready = sorted((b for b in self._buckets if b.pairs), key=Bucket.oldest)
        if not ready:
            return None
        out: list[Pair] = []
        used = 0
        for bucket in ready:
            if len(out) >= limit or used >= self.max_tokens:
                break
            if out and used + self.cost(bucket.pairs[0], bucket) > self.max_tokens:
                continue
            used += self._take(bucket, limit, self.max_tokens - used, out)
        return out or None

    def _cut(self, bucket: Bucket) -> list[Pair] | None:
        out: list[Pair] = []
        self._take(bucket, self.max_pairs, self.max_tokens, out)
        return out or None

    def next_deadline(self) -> float | None:
        """When the oldest queued pair becomes due (monotonic seconds), or None if empty."""
        heads = [b.oldest() for b in self._buckets if b.pairs]
        return min(heads) + self.config.timeout_ms / 1000.0 if heads else None

    def depths(self) -> dict[int, int]:
        """Queued pairs per bucket edge (for stats)."""
        return {b.edge: len(b.pairs) for b in self._buckets if b.pairs}
