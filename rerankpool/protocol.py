"""The rerankpool wire protocol, in one place.

Every message is two ZeroMQ frames after the routing identity: the protocol tag
``RP01`` and a msgpack map (the header). The tag carries the version, so either
side can refuse what it does not understand. Scores travel as raw little-endian
float32 bytes inside the header (msgpack ``bin``), indices as int32 bytes.

Each message has one builder in this module (``encode_*``, named with its group below);
nothing else builds a header by hand, so every sender of a message sends the same bytes.

Client -> broker (client DEALER, broker frontend ROUTER; ``encode_request``)::

    {"op": "rerank", "id": int, "query": str, "docs": [str], "top_k": int|None,
     "activation": "raw"|"sigmoid", "timeout_ms": int|None, "model": str|None,
     "truncate": bool|None, "truncation_direction": "right"|"left", "max_tokens_per_doc": int|None}
    {"op": "score", "id": int, "queries": [str], "query_index": [int]|None,
     "docs": [str], "activation": ..., "timeout_ms": ..., "model": ...}
        # model: which served model scores the pairs; None: the default (the first one served)
        # truncate (None: the workers' default), truncation_direction, max_tokens_per_doc: see Truncation
        # "chunking": {"aggregate", "window_tokens", "overlap_tokens", "max_windows"} (see Chunking), or absent
    {"op": "models", "id": int}       # the models served now, with their live workers
    {"op": "stats", "id": int, "events_since": int|None, "history": bool}  # history: the last minutes, "recent"
    {"op": "ping", "id": int, "wait_workers": int|None, "timeout_ms": int|None}
        # answered once >= wait_workers workers are live, or at timeout_ms
    {"op": "cancel", "id": int}       # drop request `id` of this client; no reply

Broker -> client (``encode_scores_reply``, ``encode_value_reply``, ``encode_error_reply``)::

    {"id": int, "ok": True, "scores": f32 bytes, "indices": i32 bytes (rerank only),
     "usage": {"tokens": int, "tokenize_ms": float, "queue_ms": float, "inference_ms": float},
     "spans": i32 bytes (chunked scoring: per result, the best window's [start, end) characters in its doc)}
        # usage: tokens of all pairs; each stage's time as the mean over the pairs
    {"id": int, "ok": True, "stats": {..., "events": [BatchEvent as a map]}} / {"id": int, "ok": True, "pong": {...}}
    {"id": int, "ok": True, "models": [ModelInfo as a map]}
    {"id": int|None, "ok": False, "error": {"code": str, "message": str}}

Worker -> broker (worker DEALER, broker backend ROUTER; ``encode_ready``, ``encode_heartbeat``,
``encode_result``, ``encode_failed``, ``encode_draining``, ``encode_bye``)::

    {"op": "ready", "info": {model, label, engine, device, dtype, capacity, pid, host, max_length, packed}}
    {"op": "heartbeat", "host": str, "sample": {name: float}}  # the host's readings (worker/host.py)
    {"op": "result", "id": batch_id, "scores": f32 bytes, "tokens": i32 bytes (per pair), "timings": {...},
     "memory": {...}, "refused": [[doc index, reason], ...] (pairs too long for a request that forbade cutting),
     "windows": [[doc index, [[start, end, tokens], ...]], ...] (docs to split: their windows, not scored)}
    {"op": "failed", "id": batch_id, "error": str}
    {"op": "draining"}                # send no more batches; "bye" follows when done
    {"op": "bye"}

Broker -> worker (``encode_batch``, ``encode_heartbeat``, ``encode_disconnect``, ``encode_refused``)::

    {"op": "batch", "id": batch_id, "queries": [str], "query_index": i32 bytes, "docs": [str],
     "truncation": {"truncate": u8 bytes (0 default, 1 cut, 2 refuse), "left": u8 bytes,
                    "max_doc_tokens": i32 bytes (0: none)} (per doc; left out when every pair takes the defaults),
     "split": {"doc": i32 bytes (the docs to split into windows, if longer than one), "window": i32 bytes,
               "overlap": i32 bytes, "max_windows": i32 bytes} (per listed doc; left out when none is)}
    {"op": "heartbeat"}
    {"op": "disconnect"}              # unknown peer: register again with "ready"
    {"op": "refused", "reason": str}  # this worker may not join; it exits

Worker -> device process (``worker --device-process``: one process per device runs the
model for the workers of that host; worker DEALER, device process ROUTER on ipc;
``encode_hello``, ``encode_forward``)::

    {"op": "hello"}
    {"op": "forward", "tag": int, "kind": "packed"|"padded", "arrays": {name: [dtype, shape]}}
        + one frame of raw bytes per array, in the order of "arrays"

Device process -> worker (a forward's reply carries its "tag": a worker has several in flight;
``encode_device_info``, ``encode_forward_scores``, ``encode_device_error``)::

    {"ok": True, "info": {"engine", "device", "dtype", "packed", "pid"}}
    {"ok": True, "tag": int, "scores": f32 bytes, "computed_tokens": int, "memory": {...}, "pid": int,
     "device_ms": float (from taking the chunk off its socket to this reply)}
    {"ok": False, "tag": int | None, "error": str}   # tag None: the request could not be read
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import msgpack
import numpy as np

TAG = b"RP01"  # the protocol and its version: a peer with another tag is refused

# Client operations.
OP_RERANK = "rerank"
OP_SCORE = "score"
OP_STATS = "stats"
OP_PING = "ping"
OP_CANCEL = "cancel"
OP_MODELS = "models"
CLIENT_OPS = (OP_RERANK, OP_SCORE, OP_STATS, OP_PING, OP_CANCEL, OP_MODELS)

# Worker <-> broker operations.
W_READY = "ready"
W_HEARTBEAT = "heartbeat"
W_RESULT = "result"
W_FAILED = "failed"
W_DRAINING = "draining"
W_BYE = "bye"
B_BATCH = "batch"
B_HEARTBEAT = "heartbeat"
B_DISCONNECT = "disconnect"
B_REFUSED = "refused"

# Worker <-> device process operations.
D_HELLO = "hello"
D_FORWARD = "forward"

ACTIVATIONS = ("raw", "sigmoid")


class ErrorCode:
    """Error codes a client may receive. Each has one meaning and one remedy."""

    BAD_REQUEST = "bad_request"  # malformed message or fields: fix the request
    UNSUPPORTED_VERSION = "unsupported_version"  # protocol tag mismatch: upgrade client/broker
    UNKNOWN_OP = "unknown_op"
    TOO_LARGE = "too_large"  # over a configured limit: split the request
    OVERLOADED = "overloaded"  # queue bound reached: back off and retry
    NO_WORKERS = "no_workers"  # no worker registered within the deadline
    TIMEOUT = "timeout"  # deadline passed before all pairs were scored
    WORKER_ERROR = "worker_error"  # the model failed on this input
    SHUTTING_DOWN = "shutting_down"
    DUPLICATE_ID = "duplicate_id"  # a request with this id is still in flight
    UNKNOWN_MODEL = "unknown_model"  # no worker ever served the model the request names: pick a served one


class ProtocolError(Exception):
    """A message that cannot be served; becomes an error reply with ``code``."""

    def __init__(self, code: str, message: str, request_id: int | None = None, op: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.op = op  # the request's op, when it could be read


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may ask for. Oversized requests get ``too_large``."""

    max_docs: int = 1000
    max_doc_chars: int = 20_000
    max_query_chars: int = 4_000
    max_message_bytes: int = 16 * 2**20


TRUNCATION_DIRECTIONS = ("right", "left")


@dataclass(frozen=True)
class Truncation:
    """How a request's pairs are cut to the model's window, in the terms TEI and Cohere clients send.

    ``truncate`` None takes the workers' default (``--truncate``, on unless ``--no-truncate``);
    False refuses a pair longer than the window with ``too_large``, naming the document and its
    token count (TEI's behaviour) instead of cutting it silently. ``direction`` "left" cuts the
    start instead of the end (TEI's ``truncation_direction``). ``max_tokens_per_doc`` cuts each
    document to that many tokens before the pair is fitted to the window (Cohere v2's).
    """

    truncate: bool | None = None
    direction: str = "right"
    max_tokens_per_doc: int | None = None

    @property
    def is_default(self) -> bool:
        return self == DEFAULT_TRUNCATION


DEFAULT_TRUNCATION = Truncation()

AGGREGATES = ("max", "mean", "first")
MAX_TOKENS_SETTING = 1 << 20  # the most a request may set any token count to (they travel as 32-bit ints)
MAX_WINDOWS_SETTING = 10_000


@dataclass(frozen=True)
class Chunking:
    """Chunked scoring of a document longer than the model's window, as Cohere's hosted rerank does it.

    A worker splits such a document into overlapping windows of ``window_tokens`` tokens
    (None: as many as fit beside the query) overlapping by ``overlap_tokens``, cut at word
    boundaries by the model's own tokenizer, at most ``max_windows`` of them (the first ones).
    Every window is scored as a pair of its own, and the document's score is the
    ``aggregate`` of its windows' scores: ``max``, ``mean`` or ``first``.
    """

    aggregate: str = "max"
    window_tokens: int | None = None
    overlap_tokens: int = 64
    max_windows: int = 16

    def check(self) -> str | None:
        """What is wrong with these settings, or None."""
        if self.aggregate not in AGGREGATES:
            return f"chunking aggregate must be one of {', '.join(AGGREGATES)}, got {self.aggregate!r}"
        if self.window_tokens is not None and not 8 <= self.window_tokens <= MAX_TOKENS_SETTING:
            return f"chunking window_tokens must be in [8, {MAX_TOKENS_SETTING}], got {self.window_tokens}"
        if not 0 <= self.overlap_tokens < (self.window_tokens or MAX_TOKENS_SETTING):
            return f"chunking overlap_tokens must be >= 0 and below window_tokens, got {self.overlap_tokens}"
        if not 1 <= self.max_windows <= MAX_WINDOWS_SETTING:
            return f"chunking max_windows must be in [1, {MAX_WINDOWS_SETTING}], got {self.max_windows}"
        return None


@dataclass
class Request:
    """A decoded, validated client request. ``op`` is rerank or score for scoring work."""

    id: int
    op: str
    queries: list[str] = field(default_factory=list)
    query_index: list[int] | None = None  # None: every doc pairs with queries[0]
    docs: list[str] = field(default_factory=list)
    top_k: int | None = None
    activation: str = "raw"
    timeout_ms: int | None = None
    events_since: int | None = None
    history: bool = False  # stats: also the broker's history (broker/history.py)
    wait_workers: int | None = None
    model: str | None = None  # None: the broker's default model
    truncation: Truncation = DEFAULT_TRUNCATION
    chunking: Chunking | None = None  # None: the broker's default (off unless --chunking)

    @property
    def n_pairs(self) -> int:
        return len(self.docs)

    def query_of(self, i: int) -> int:
        return 0 if self.query_index is None else self.query_index[i]


def pack(header: dict[str, Any]) -> list[bytes]:
    return [TAG, msgpack.packb(header, use_bin_type=True)]


def unpack(frames: Sequence[bytes]) -> dict[str, Any]:
    """Decode [TAG, header]; raise ProtocolError on anything else."""
    if len(frames) < 2:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"expected 2 frames [{TAG!r}, msgpack header], got {len(frames)}")
    if bytes(frames[0]) != TAG:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"protocol tag {bytes(frames[0])[:16]!r} is not {TAG!r}: use a client of the same rerankpool version",
        )
    try:
        header = msgpack.unpackb(frames[1], raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"header is not valid msgpack: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"header must be a msgpack map, got {type(header).__name__}")
    return header


# -- client requests ----------------------------------------------------------------


def encode_request(req: Request) -> list[bytes]:
    header: dict[str, Any] = {"op": req.op, "id": req.id}
    if req.op == OP_RERANK:
        header.update(query=req.queries[0], docs=req.docs, top_k=req.top_k)
    elif req.op == OP_SCORE:
        header.update(queries=req.queries, query_index=req.query_index, docs=req.docs)
    elif req.op == OP_STATS:
        header["events_since"] = req.events_since
        if req.history:
            header["history"] = True
    elif req.op == OP_PING:
        header.update(wait_workers=req.wait_workers, timeout_ms=req.timeout_ms)
    if req.op in (OP_RERANK, OP_SCORE):
        header.update(activation=req.activation, timeout_ms=req.timeout_ms)
        if req.model is not None:
            header["model"] = req.model
        t = req.truncation
        if not t.is_default:
            header.update(truncate=t.truncate, truncation_direction=t.direction,
                          max_tokens_per_doc=t.max_tokens_per_doc)
        if req.chunking is not None:
            header["chunking"] = dataclasses.asdict(req.chunking)
    return pack(header)


def _field(header: dict, name: str, kind: type | tuple[type, ...], rid: int | None, required: bool = True) -> Any:
    value = header.get(name)
    if value is None:
        if required:
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"missing field {name!r}", rid)
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        want = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"field {name!r} must be {want}, got {type(value).__name__}", rid)
    return value


def _strings(values: list, name: str, max_chars: int, rid: int | None) -> list[str]:
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"{name}[{i}] must be a string, got {type(v).__name__}", rid)
        if len(v) > max_chars:
            raise ProtocolError(
                ErrorCode.TOO_LARGE, f"{name}[{i}] has {len(v)} characters; the limit is {max_chars}", rid
            )
    return values


def decode_request(frames: Sequence[bytes], limits: Limits = Limits()) -> Request:
    """Decode and validate a client request. Raises ProtocolError with a code and a remedy."""
    size = sum(len(f) for f in frames)
    if size > limits.max_message_bytes:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, f"message is {size} bytes; the limit is {limits.max_message_bytes}: split it"
        )
    header = unpack(frames)
    rid = header.get("id")
    rid = rid if isinstance(rid, int) and not isinstance(rid, bool) else None
    _field(header, "id", int, None)
    op = _field(header, "op", str, rid)
    if op not in CLIENT_OPS:
        raise ProtocolError(ErrorCode.UNKNOWN_OP, f"unknown op {op!r}; supported: {', '.join(CLIENT_OPS)}", rid)
    try:
        return _decode_fields(header, Request(id=rid, op=op), limits)  # type: ignore[arg-type]
    except ProtocolError as exc:
        exc.op = op
        raise


def _decode_fields(header: dict[str, Any], req: Request, limits: Limits) -> Request:
    """The fields of a request whose id and op are known."""
    rid, op = req.id, req.op
    if op in (OP_CANCEL, OP_MODELS):
        return req
    if op == OP_STATS:
        req.events_since = _field(header, "events_since", int, rid, required=False)
        req.history = header.get("history") is True
        return req
    if op == OP_PING:
        req.wait_workers = _field(header, "wait_workers", int, rid, required=False)
        req.timeout_ms = _field(header, "timeout_ms", int, rid, required=False)
        return req
    docs = _field(header, "docs", list, rid)
    if not docs:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "docs is empty: send at least one document", rid)
    if len(docs) > limits.max_docs:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, f"{len(docs)} docs in one request; the limit is {limits.max_docs}: split it", rid
        )
    req.docs = _strings(docs, "docs", limits.max_doc_chars, rid)
    if op == OP_RERANK:
        req.queries = _strings([_field(header, "query", str, rid)], "query", limits.max_query_chars, rid)
        top_k = _field(header, "top_k", int, rid, required=False)
        if top_k is not None and top_k < 1:
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"top_k must be >= 1, got {top_k}", rid)
        req.top_k = top_k
    else:
        queries = _field(header, "queries", list, rid)
        if not queries:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "queries is empty", rid)
        req.queries = _strings(queries, "queries", limits.max_query_chars, rid)
        index = _field(header, "query_index", list, rid, required=False)
        if index is None and len(queries) != 1:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "query_index is required when there are several queries", rid)
        if index is not None:
            if len(index) != len(docs):
                raise ProtocolError(
                    ErrorCode.BAD_REQUEST, f"query_index has {len(index)} entries for {len(docs)} docs", rid
                )
            if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(queries) for i in index):
                raise ProtocolError(
                    ErrorCode.BAD_REQUEST, f"query_index entries must be ints in [0, {len(queries)})", rid
                )
        req.query_index = index
    activation = _field(header, "activation", str, rid, required=False) or "raw"
    if activation not in ACTIVATIONS:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"activation must be one of {ACTIVATIONS}, got {activation!r}", rid)
    req.activation = activation
    timeout_ms = _field(header, "timeout_ms", int, rid, required=False)
    if timeout_ms is not None and timeout_ms <= 0:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"timeout_ms must be > 0, got {timeout_ms}", rid)
    req.timeout_ms = timeout_ms
    model = _field(header, "model", str, rid, required=False)
    if model is not None and not model:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "model must be a non-empty string, or left out for the default", rid)
    req.model = model
    truncate = header.get("truncate")
    if truncate is not None and not isinstance(truncate, bool):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"truncate must be true, false or null, got {truncate!r:.40}", rid)
    direction = _field(header, "truncation_direction", str, rid, required=False) or "right"
    if direction.lower() not in TRUNCATION_DIRECTIONS:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"truncation_direction must be right or left, got {direction!r}",
                            rid)
    max_doc = _field(header, "max_tokens_per_doc", int, rid, required=False)
    if max_doc is not None and not 1 <= max_doc <= MAX_TOKENS_SETTING:
        raise ProtocolError(ErrorCode.BAD_REQUEST,
                            f"max_tokens_per_doc must be in [1, {MAX_TOKENS_SETTING}], got {max_doc}", rid)
    truncation = Truncation(truncate, direction.lower(), max_doc)
    req.truncation = DEFAULT_TRUNCATION if truncation.is_default else truncation  # pairs share the default
    chunking = header.get("chunking")
    if chunking is not None:
        if not isinstance(chunking, dict):
            raise ProtocolError(ErrorCode.BAD_REQUEST, "chunking must be a map of aggregate, window_tokens, "
                                                       "overlap_tokens and max_windows", rid)
        known = {f.name: f for f in dataclasses.fields(Chunking)}
        unknown = set(chunking) - set(known)
        if unknown:
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"unknown chunking keys: {', '.join(sorted(map(str, unknown)))}",
                                rid)
        for name, value in chunking.items():
            kind = str if name == "aggregate" else int
            if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
                raise ProtocolError(ErrorCode.BAD_REQUEST, f"chunking {name} must be {kind.__name__}", rid)
        req.chunking = Chunking(**{k: v for k, v in chunking.items() if v is not None or k == "window_tokens"})
        problem = req.chunking.check()
        if problem:
            raise ProtocolError(ErrorCode.BAD_REQUEST, problem, rid)
    return req


# -- broker replies -----------------------------------------------------------------


def f32_bytes(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values, dtype="<f4").tobytes()


def i32_bytes(values: np.ndarray | Sequence[int]) -> bytes:
    return np.ascontiguousarray(values, dtype="<i4").tobytes()


def from_f32(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4")


def from_i32(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i4")


def encode_scores_reply(request_id: int, scores: np.ndarray, indices: np.ndarray | None = None,
                        usage: dict[str, float] | None = None, spans: np.ndarray | None = None) -> list[bytes]:
    header: dict[str, Any] = {"id": request_id, "ok": True, "scores": f32_bytes(scores)}
    if indices is not None:
        header["indices"] = i32_bytes(indices)
    if usage is not None:
        header["usage"] = usage
    if spans is not None:
        header["spans"] = i32_bytes(np.asarray(spans).reshape(-1))
    return pack(header)


def encode_error_reply(request_id: int | None, code: str, message: str) -> list[bytes]:
    return pack({"id": request_id, "ok": False, "error": {"code": code, "message": message}})


def encode_value_reply(request_id: int, key: str, value: Any) -> list[bytes]:
    return pack({"id": request_id, "ok": True, key: value})


# -- worker <-> broker ------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    """A model the broker serves (the ``models`` op): its live workers and its queue."""

    name: str
    default: bool  # requests that name no model go to it
    workers: int  # live now; 0 once all are gone (requests for it wait for one until their deadline)
    queued_pairs: int
    label: str = ""  # what the workers say it is (e.g. "random TEST model")
    engines: list[str] = field(default_factory=list)  # "engine on device (dtype)" of its workers

    @classmethod
    def from_dict(cls, data: Any) -> "ModelInfo":
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker tells the broker when it registers."""

    model: str
    label: str
    engine: str
    device: str
    dtype: str
    capacity: int
    pid: int
    host: str
    max_length: int
    packed: bool = False  # runs pairs back to back with no padding: the broker prices its batches by their tokens

    @classmethod
    def from_dict(cls, data: Any) -> "WorkerInfo":
        if not isinstance(data, dict):
            raise ProtocolError(ErrorCode.BAD_REQUEST, "ready.info must be a map")
        try:
            info = cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)
                          if f.name in data or f.default is dataclasses.MISSING})
        except (KeyError, TypeError) as exc:
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"ready.info is incomplete: {exc}") from None
        if not isinstance(info.capacity, int) or info.capacity < 1:
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"capacity must be an int >= 1, got {info.capacity!r}")
        return info


@dataclass
class BatchTimings:
    """Per-batch timings a worker reports with its scores.

    ``worker_ms`` runs from the batch's arrival at the worker to its result, so
    ``worker_ms - tokenize_ms - inference_ms`` is the worker's own hand-offs (none for a
    ``--device-process`` worker, which does all on one thread).
    ``device_ms`` is the time its chunks spent in the device process from when it took
    them off its socket (the longest of them, as a batch's chunks are sent together; 0
    when the worker runs the model itself), so ``inference_ms - device_ms`` is the ipc
    hop, any wait in that socket while the process was busy, and the wait of a reply
    that came while the worker was tokenizing its next batch.
    """

    size: int
    tokenize_ms: float
    inference_ms: float
    real_tokens: int
    padded_tokens: int
    chunks: int = 1
    worker_ms: float = 0.0
    device_ms: float = 0.0

    @property
    def padding_waste_pct(self) -> float | None:
        """Share of the computed tokens that were padding, %; None for an empty batch (it drops out of summaries)."""
        if self.padded_tokens <= 0:
            return None
        return 100.0 * (self.padded_tokens - self.real_tokens) / self.padded_tokens

    @classmethod
    def from_dict(cls, data: Any) -> Any:
        """From a map, ignoring keys this class lacks (an older or newer peer's)."""
        if not isinstance(data, dict):
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"{cls.__name__} must be a map")
        try:
            return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)
                          if f.name in data or f.default is dataclasses.MISSING})
        except (KeyError, TypeError) as exc:
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"{cls.__name__} is incomplete: {exc}") from None


@dataclass
class BatchEvent(BatchTimings):
    """A scored batch as the broker records it for the ``stats`` op: the worker's timings and the broker's.

    ``queue_wait_ms`` is the mean wait of its pairs in the broker's queue; ``round_trip_ms``
    runs from its sending to its result (None in results recorded before it was measured).
    This is the one shape of a batch's cost: the bench's reports read these.
    """

    seq: int = 0
    t: float = 0.0  # unix time the result came back
    worker: str = ""
    model: str = ""
    queue_wait_ms: float = 0.0
    round_trip_ms: float | None = None


@dataclass
class BatchMessage:
    """A batch for a worker: unique queries once each, and per doc the index of its query."""

    id: int
    queries: list[str]
    query_index: np.ndarray
    docs: list[str]
    truncations: list[Truncation] | None = None  # per doc; None: every pair takes the workers' defaults
    split: dict[int, Chunking] | None = None  # docs to split into windows if longer than one, by index


_TRUNCATE_CODES = {None: 0, True: 1, False: 2}


def encode_batch(batch: BatchMessage) -> list[bytes]:
    header = {"op": B_BATCH, "id": batch.id, "queries": batch.queries, "query_index": i32_bytes(batch.query_index),
              "docs": batch.docs}
    if batch.truncations is not None:
        ts = batch.truncations
        header["truncation"] = {
            "truncate": bytes(_TRUNCATE_CODES[t.truncate] for t in ts),
            "left": bytes(t.direction == "left" for t in ts),
            "max_doc_tokens": i32_bytes([t.max_tokens_per_doc or 0 for t in ts]),
        }
    if batch.split:
        docs, cs = list(batch.split), list(batch.split.values())
        header["split"] = {"doc": i32_bytes(docs), "window": i32_bytes([c.window_tokens or 0 for c in cs]),
                           "overlap": i32_bytes([c.overlap_tokens for c in cs]),
                           "max_windows": i32_bytes([c.max_windows for c in cs])}
    return pack(header)


def decode_batch(header: dict[str, Any]) -> BatchMessage:
    truncations = None
    raw = header.get("truncation")
    if raw is not None:
        codes = {v: k for k, v in _TRUNCATE_CODES.items()}
        truncations = [Truncation(codes[c], "left" if left else "right", int(m) or None)
                       for c, left, m in zip(raw["truncate"], raw["left"], from_i32(raw["max_doc_tokens"]))]
    split = None
    raw = header.get("split")
    if raw is not None:
        split = {int(d): Chunking("max", int(w) or None, int(o), int(m)) for d, w, o, m in
                 zip(from_i32(raw["doc"]), from_i32(raw["window"]), from_i32(raw["overlap"]),
                     from_i32(raw["max_windows"]))}
    return BatchMessage(id=header["id"], queries=header["queries"], query_index=from_i32(header["query_index"]),
                        docs=header["docs"], truncations=truncations, split=split)


def encode_result(batch_id: int, scores: np.ndarray, timings: BatchTimings, memory: dict[str, float],
                  tokens: np.ndarray, refused: dict[int, str] | None = None,
                  windows: dict[int, list[tuple[int, int, int]]] | None = None) -> list[bytes]:
    """A scored batch: scores and each pair's token count in batch order, and the batch's timings;
    ``refused``: the pairs (by index in the batch) too long for a request that forbade cutting them, and why;
    ``windows``: the docs split into windows ([start, end) characters, tokens), which were not scored."""
    header = {"op": W_RESULT, "id": batch_id, "scores": f32_bytes(scores), "tokens": i32_bytes(tokens),
              "timings": timings.__dict__, "memory": memory}
    if refused:
        header["refused"] = [[int(i), reason] for i, reason in refused.items()]
    if windows:
        header["windows"] = [[int(i), [list(map(int, w)) for w in ws]] for i, ws in windows.items()]
    return pack(header)


def encode_failed(batch_id: int, error: str) -> list[bytes]:
    """A batch the worker could not score; the broker fails its requests with ``error``."""
    return pack({"op": W_FAILED, "id": batch_id, "error": error})


def encode_ready(info: WorkerInfo) -> list[bytes]:
    """A worker registers (again, after ``disconnect`` or a reconnect)."""
    return pack({"op": W_READY, "info": info.__dict__})


def encode_heartbeat(host: str | None = None, sample: dict[str, float] | None = None) -> list[bytes]:
    """A heartbeat, either way (``W_HEARTBEAT`` and ``B_HEARTBEAT`` are the same op); a worker's carries its
    host's readings."""
    header: dict[str, Any] = {"op": W_HEARTBEAT}
    if sample is not None:
        header.update(host=host, sample=sample)
    return pack(header)


def encode_draining() -> list[bytes]:
    """A stopping worker: send it no more batches; ``bye`` follows once it has answered those it holds."""
    return pack({"op": W_DRAINING})


def encode_bye() -> list[bytes]:
    """A worker leaves, its batches all answered."""
    return pack({"op": W_BYE})


def encode_disconnect() -> list[bytes]:
    """To a peer the broker does not know: register again with ``ready``."""
    return pack({"op": B_DISCONNECT})


def encode_refused(reason: str) -> list[bytes]:
    """To a worker that may not join (for instance, another model); it exits."""
    return pack({"op": B_REFUSED, "reason": reason})


# -- worker <-> device process -------------------------------------------------------


def encode_forward(kind: str, arrays: dict[str, np.ndarray], *, tag: int) -> list[bytes]:
    """A forward request: the header names each array's dtype and shape; the bytes follow as frames."""
    shapes = {name: [a.dtype.str, list(a.shape)] for name, a in arrays.items()}
    return [*pack({"op": D_FORWARD, "tag": tag, "kind": kind, "arrays": shapes}),
            *(np.ascontiguousarray(a).data for a in arrays.values())]


def encode_hello() -> list[bytes]:
    """A worker asks the device process what it runs; ``encode_device_info`` answers."""
    return pack({"op": D_HELLO})


def encode_device_info(*, engine: str, device: str, dtype: str, packed: bool, pid: int) -> list[bytes]:
    """The device process's answer to ``hello``: its engine, and whether that takes packed chunks."""
    return pack({"ok": True, "info": {"engine": engine, "device": device, "dtype": dtype, "packed": packed,
                                      "pid": pid}})


def encode_forward_scores(tag: int, scores: np.ndarray, *, computed_tokens: int, memory: dict[str, float],
                          pid: int, device_ms: float) -> list[bytes]:
    """A forward's scores; ``device_ms`` from taking the chunk off the socket to this reply."""
    return pack({"ok": True, "tag": tag, "scores": f32_bytes(scores), "computed_tokens": computed_tokens,
                 "memory": memory, "pid": pid, "device_ms": device_ms})


def encode_device_error(tag: int | None, error: str) -> list[bytes]:
    """A forward that failed, or a request that could not be read (``tag`` None when it is unknown)."""
    return pack({"ok": False, "tag": tag, "error": error})


def decode_forward(header: dict[str, Any], frames: Sequence[bytes]) -> tuple[str, dict[str, np.ndarray]]:
    """(kind, arrays) of a forward request; ``frames`` are the ones after the header."""
    shapes = header.get("arrays")
    if not isinstance(shapes, dict) or len(shapes) != len(frames):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "forward: 'arrays' must describe every array frame")
    arrays = {}
    for (name, (dtype, shape)), data in zip(shapes.items(), frames):
        arrays[name] = np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape)
    return str(header.get("kind")), arrays
