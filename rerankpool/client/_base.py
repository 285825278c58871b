"""Everything the clients share that does no I/O: building requests and reading replies.

``Client`` and ``AsyncClient`` add only sending, waiting and closing (as httpx does).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Sequence

from rerankpool import protocol as P
from rerankpool.errors import BadRequest, NoReply, ServerError, error_from_reply

DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"
GRACE_S = 1.0  # how long past a request's deadline the client still waits for the broker's answer


@dataclass(frozen=True)
class Hit:
    """One reranked document: its index in the input, its score, and the document if asked for.

    ``span``: under chunked scoring, the [start, end) characters of the document's best window
    (the whole document when it fit in one), so that a caller can quote the passage that counted.
    """

    index: int
    score: float
    document: str | None = None
    span: tuple[int, int] | None = None


@dataclass(frozen=True)
class Usage:
    """What a request cost: the tokens of all its pairs, and each stage's time as the mean over its pairs."""

    tokens: int
    tokenize_ms: float
    queue_ms: float
    inference_ms: float

    @classmethod
    def from_reply(cls, header: dict[str, Any]) -> "Usage | None":
        usage = header.get("usage")
        if not isinstance(usage, dict):
            return None
        return cls(int(usage.get("tokens", 0)), float(usage.get("tokenize_ms", 0.0)),
                   float(usage.get("queue_ms", 0.0)), float(usage.get("inference_ms", 0.0)))


class Ranking(list):
    """``rerank``'s answer: a list of ``Hit``, best first, that also carries the request's ``usage``."""

    def __init__(self, hits: Sequence[Hit] = (), usage: Usage | None = None) -> None:
        super().__init__(hits)
        self.usage = usage


class Scores(list):
    """``score``'s answer: a list of floats in input order, that also carries the request's ``usage`` (and,
    under chunked scoring, each pair's best window as ``spans``)."""

    def __init__(self, scores: Sequence[float] = (), usage: Usage | None = None,
                 spans: list[tuple[int, int]] | None = None) -> None:
        super().__init__(scores)
        self.usage = usage
        self.spans = spans


class BaseClient:
    def __init__(self, address: str = DEFAULT_ADDRESS, timeout: float = 30.0, retries: int = 1) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be > 0 seconds")
        self.address = address
        self.timeout = timeout
        self.retries = retries
        self._ids = itertools.count(1)

    def _not_running(self) -> NoReply:
        return NoReply(f"nothing listens at {self.address} (connections refused): start `rerankpool broker` "
                       "(or `rerankpool up`) there, or check the address")

    def _timeout(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else timeout

    def _rerank_request(self, query: str, docs: Sequence[str], top_k: int | None, activation: str,
                        timeout: float, model: str | None, truncation: P.Truncation,
                        chunking: P.Chunking | None) -> P.Request:
        return P.Request(id=0, op=P.OP_RERANK, queries=[query], docs=list(docs), top_k=top_k,
                         activation=activation, timeout_ms=max(1, int(timeout * 1000)), model=model,
                         truncation=truncation, chunking=_checked(chunking))

    def _score_request(self, pairs: Sequence[tuple[str, str]], activation: str, timeout: float,
                       model: str | None, truncation: P.Truncation, chunking: P.Chunking | None) -> P.Request:
        queries: dict[str, int] = {}
        index: list[int] = []
        docs: list[str] = []
        for pair in pairs:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise BadRequest(P.ErrorCode.BAD_REQUEST, f"score() takes (query, doc) pairs, got {pair!r:.80}")
            query, doc = pair
            index.append(queries.setdefault(query, len(queries)))
            docs.append(doc)
        return P.Request(id=0, op=P.OP_SCORE, queries=list(queries), query_index=index if len(queries) > 1 else None,
                         docs=docs, activation=activation, timeout_ms=max(1, int(timeout * 1000)), model=model,
                         truncation=truncation, chunking=_checked(chunking))

    def _encode(self, req: P.Request) -> list[bytes]:
        """Give the request a fresh id and encode it. Each attempt gets its own id."""
        req.id = next(self._ids)
        try:
            return P.encode_request(req)
        except (TypeError, ValueError, OverflowError) as exc:
            raise BadRequest(P.ErrorCode.BAD_REQUEST, f"request cannot be encoded: {exc}") from exc

    @staticmethod
    def _cancel_frames(request_id: int) -> list[bytes]:
        return P.encode_request(P.Request(id=request_id, op=P.OP_CANCEL))

    @staticmethod
    def _decode(frames: Sequence[bytes]) -> dict[str, Any]:
        try:
            return P.unpack(frames)
        except P.ProtocolError as exc:
            raise ServerError(exc.code, exc.message) from exc

    @staticmethod
    def _check(header: dict[str, Any]) -> dict[str, Any]:
        if not header.get("ok"):
            error = header.get("error") or {}
            raise error_from_reply(str(error.get("code", "unknown")), str(error.get("message", "")))
        return header

    @staticmethod
    def _hits(header: dict[str, Any], docs: Sequence[str], return_documents: bool) -> Ranking:
        scores = P.from_f32(header["scores"])
        indices = P.from_i32(header["indices"])
        spans = _spans(header) or [None] * len(indices)
        return Ranking(
            [Hit(int(i), float(s), docs[int(i)] if return_documents else None, span)
             for i, s, span in zip(indices, scores, spans)],
            Usage.from_reply(header),
        )

    @staticmethod
    def _scores(header: dict[str, Any]) -> Scores:
        return Scores(P.from_f32(header["scores"]).tolist(), Usage.from_reply(header), _spans(header))


def _spans(header: dict[str, Any]) -> list[tuple[int, int]] | None:
    raw = header.get("spans")
    if not isinstance(raw, bytes):
        return None
    return [(int(s), int(e)) for s, e in P.from_i32(raw).reshape(-1, 2)]


def _checked(chunking: P.Chunking | None) -> P.Chunking | None:
    """Refuse bad chunking settings here, before they travel."""
    problem = chunking.check() if chunking is not None else None
    if problem:
        raise BadRequest(P.ErrorCode.BAD_REQUEST, problem)
    return chunking


def reply_id(header: dict[str, Any]) -> int | None:
    rid = header.get("id")
    return rid if isinstance(rid, int) else None


__all__ = ["BaseClient", "Hit", "Ranking", "Scores", "Usage", "DEFAULT_ADDRESS", "GRACE_S", "reply_id"]
