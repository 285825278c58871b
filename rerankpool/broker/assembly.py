"""Requests split into pairs, and scores put back together. Pure logic, no sockets.

Exactly-once accounting lives here: a request is answered once (scores, or one
error), each pair's score is taken once, and scores arriving for a request that has
already been answered (timed out, failed) are ignored.

Chunked scoring adds one level: a worker may answer a document's pair with its windows
instead of a score (``split``); each window becomes a pair of its own, scored once like any
other, and the document's score is the aggregate of its windows' scores once all are in,
with the best window's character span kept for the reply.
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass, field
from typing import Hashable, Sequence

import numpy as np

from rerankpool.broker.batching import Pair, estimate_tokens
from rerankpool.protocol import OP_RERANK, Chunking, ErrorCode, Request

logger = logging.getLogger(__name__)

RequestKey = tuple[bytes, int]  # (client routing identity, client's request id)


@dataclass(frozen=True)
class BatchCost:
    """What a scored batch cost each of its pairs, for the requests' usage.

    ``tokens`` and ``queue_ms`` are per pair (tokens as the worker's tokenizer counted
    them); the stage times are the batch's, shared by all its pairs.
    """

    tokens: np.ndarray
    queue_ms: np.ndarray
    tokenize_ms: float
    inference_ms: float


@dataclass
class Outcome:
    """A finished request: either scores (input order) and their usage, or an error."""

    key: RequestKey
    request: Request
    scores: np.ndarray | None = None
    error_code: str | None = None
    error_message: str | None = None
    received_at: float = 0.0
    usage: dict[str, float] | None = None
    spans: np.ndarray | None = None  # chunked scoring: each doc's best window, [start, end) characters

    @property
    def ok(self) -> bool:
        return self.error_code is None


@dataclass
class _Windows:
    """A document split into windows: their spans, and their scores as they come."""

    spans: list[tuple[int, int]]
    scores: np.ndarray
    done: np.ndarray
    remaining: int


def aggregate(how: str, scores: np.ndarray) -> tuple[float, int]:
    """A document's score from its windows' scores, and the window to quote (the best one, or the first)."""
    if how == "first":
        return float(scores[0]), 0
    best = int(np.argmax(scores))
    return (float(scores.mean()) if how == "mean" else float(scores[best])), best


@dataclass
class _Pending:
    request: Request
    received_at: float
    deadline: float | None
    scores: np.ndarray
    done: np.ndarray
    remaining: int
    chunking: Chunking | None = None
    spans: np.ndarray | None = None  # [n, 2]: each doc's best window; the whole doc until split
    windows: dict[int, _Windows] = field(default_factory=dict)
    tokens: int = 0  # the usage so far: tokens, and stage times summed over the pairs scored
    tokenize_ms: float = 0.0
    queue_ms: float = 0.0
    inference_ms: float = 0.0

    def usage(self) -> dict[str, float]:
        """Tokens in all, and each stage's time as the mean over the pairs (as TEI reports them)."""
        n = max(1, self.request.n_pairs - self.remaining)
        return {"tokens": self.tokens, "tokenize_ms": self.tokenize_ms / n, "queue_ms": self.queue_ms / n,
                "inference_ms": self.inference_ms / n}


def finalize(request: Request, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply the request's activation; for rerank, sort best first and cut to top_k.

    Returns (scores, indices): indices is None for ``score`` (input order).
    """
    out = scores.astype(np.float32, copy=True)
    if request.activation == "sigmoid":
        out = (1.0 / (1.0 + np.exp(-out.astype(np.float64)))).astype(np.float32)
    if request.op != OP_RERANK:
        return out, None
    order = np.argsort(-out, kind="stable")
    if request.top_k is not None:
        order = order[: request.top_k]
    return out[order], order.astype(np.int32)


@dataclass
class RequestTable:
    """Requests in flight, keyed by (client, id), with their deadlines."""

    max_length: int = 512
    _pending: dict[RequestKey, _Pending] = field(default_factory=dict)
    _deadlines: list[tuple[float, RequestKey]] = field(default_factory=list)
    answered: int = 0
    duplicates: int = 0  # scores offered for a pair already scored (must stay 0)

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._pending

    def is_live(self, key: Hashable) -> bool:
        return key in self._pending

    def add(self, key: RequestKey, request: Request, now: float, default_timeout_ms: int | None,
            chunking: Chunking | None = None) -> list[Pair]:
        """Register a scoring request and return its pairs, to be queued; with ``chunking``, each pair's worker
        may split its document into windows (``split``)."""
        if key in self._pending:
            raise KeyError(key)
        timeout_ms = request.timeout_ms if request.timeout_ms is not None else default_timeout_ms
        deadline = None if timeout_ms is None else now + timeout_ms / 1000.0
        n = request.n_pairs
        spans = None
        if chunking is not None:
            spans = np.zeros((n, 2), np.int32)
            spans[:, 1] = [len(d) for d in request.docs]
        self._pending[key] = _Pending(request, now, deadline, np.zeros(n, np.float32), np.zeros(n, bool), n,
                                      chunking, spans)
        if deadline is not None:
            heapq.heappush(self._deadlines, (deadline, key))
        pairs = []
        truncation = request.truncation
        for i, doc in enumerate(request.docs):
            query = request.queries[request.query_of(i)]
            tokens = estimate_tokens(query, doc, self.max_length, truncation.max_tokens_per_doc)
            pairs.append(Pair(key, i, query, doc, tokens, truncation=truncation, chunking=chunking))
        return pairs

    def split(self, pair: Pair, windows: Sequence[tuple[int, int, int]]) -> list[Pair]:
        """A worker's windows for a document's pair: the pairs to queue for them (none if its request is gone).

        ``windows`` are ([start, end) characters, tokens) of the document; each becomes a pair of
        the window's text, priced by its real tokens.
        """
        entry = self._pending.get(pair.key)  # type: ignore[arg-type]
        if entry is None or entry.done[pair.index] or pair.index in entry.windows:
            return []
        n = len(windows)
        entry.windows[pair.index] = _Windows([(s, e) for s, e, _ in windows], np.zeros(n, np.float32),
                                             np.zeros(n, bool), n)
        return [Pair(pair.key, pair.index, pair.query, pair.doc[s:e], int(t), window=(s, e, k))
                for k, (s, e, t) in enumerate(windows)]

    def fill(self, pairs: Sequence[Pair], scores: np.ndarray, cost: BatchCost | None = None) -> list[Outcome]:
        """Record a batch's scores (and what they cost); returns the requests this completes."""
        completed: list[Outcome] = []
        for i, (pair, score) in enumerate(zip(pairs, scores)):
            entry = self._pending.get(pair.key)  # type: ignore[arg-type]
            if entry is None:
                continue  # request already answered (timeout, error): drop late scores
            if pair.window is not None:
                score = self._window_scored(entry, pair, float(score))
                if score is None:  # more windows of its document to come (or a duplicate)
                    self._charge(entry, cost, i)
                    continue
            elif entry.done[pair.index]:
                self.duplicates += 1
                logger.warning("pair %s#%d scored twice; keeping the first score", pair.key, pair.index)
                continue
            entry.scores[pair.index] = score
            entry.done[pair.index] = True
            entry.remaining -= 1
            self._charge(entry, cost, i)
            if entry.remaining == 0:
                completed.append(self._finish(pair.key, scores=entry.scores))  # type: ignore[arg-type]
        return completed

    def _window_scored(self, entry: _Pending, pair: Pair, score: float) -> float | None:
        """Take a window's score; the document's aggregate once its last window is in, else None."""
        windows = entry.windows[pair.index]
        k = pair.window[2]  # type: ignore[index]
        if windows.done[k]:
            self.duplicates += 1
            logger.warning("window %d of pair %s#%d scored twice; keeping the first score", k, pair.key, pair.index)
            return None
        windows.scores[k], windows.done[k] = score, True
        windows.remaining -= 1
        if windows.remaining:
            return None
        doc_score, best = aggregate(entry.chunking.aggregate if entry.chunking else "max", windows.scores)
        entry.spans[pair.index] = windows.spans[best]  # type: ignore[index]
        return doc_score

    @staticmethod
    def _charge(entry: _Pending, cost: BatchCost | None, i: int) -> None:
        if cost is not None:
            entry.tokens += int(cost.tokens[i])
            entry.queue_ms += float(cost.queue_ms[i])
            entry.tokenize_ms += cost.tokenize_ms
            entry.inference_ms += cost.inference_ms

    def fail(self, key: RequestKey, code: str, message: str) -> Outcome | None:
        """End a request with an error; None if it was already answered."""
        if key not in self._pending:
            return None
        return self._finish(key, code=code, message=message)

    def expire(self, now: float) -> list[Outcome]:
        """Answer every request whose deadline has passed with a timeout error."""
        expired: list[Outcome] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, key = heapq.heappop(self._deadlines)
            entry = self._pending.get(key)
            if entry is None:
                continue
            done = entry.request.n_pairs - entry.remaining
            expired.append(
                self._finish(
                    key,
                    code=ErrorCode.TIMEOUT,
                    message=f"deadline passed with {done}/{entry.request.n_pairs} pairs scored; "
                    "raise timeout_ms or add workers",
                )
            )
        return expired

    def next_deadline(self) -> float | None:
        while self._deadlines and self._deadlines[0][1] not in self._pending:
            heapq.heappop(self._deadlines)
        return self._deadlines[0][0] if self._deadlines else None

    def keys(self) -> list[RequestKey]:
        return list(self._pending)

    def _finish(
        self, key: RequestKey, scores: np.ndarray | None = None, code: str | None = None, message: str | None = None
    ) -> Outcome:
        entry = self._pending.pop(key)
        self.answered += 1
        return Outcome(key, entry.request, scores, code, message, entry.received_at,
                       entry.usage() if scores is not None else None, entry.spans if scores is not None else None)
