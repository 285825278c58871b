"""One place that maps the pool's errors to HTTP statuses, and each shape's error body.

Routes raise ``ApiError`` (or let the client's ``RerankPoolError`` through); the app's
handlers turn it into the status below and the body of the shape the route speaks, so
that each client library raises its own exception with a message that says what to fix.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from rerankpool.errors import NoReply, RerankPoolError, ServerError
from rerankpool.protocol import ErrorCode

UNAUTHORIZED = "unauthorized"  # gateway-only codes, beside the protocol's ErrorCode
NOT_FOUND = "not_found"
BROKER_UNREACHABLE = "broker_unreachable"

STATUS_BY_CODE: dict[str, int] = {
    ErrorCode.BAD_REQUEST: 422,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.OVERLOADED: 429,
    ErrorCode.NO_WORKERS: 503,
    ErrorCode.SHUTTING_DOWN: 503,
    ErrorCode.TIMEOUT: 504,
    ErrorCode.WORKER_ERROR: 500,
    ErrorCode.UNKNOWN_OP: 500,  # the gateway sent what the broker does not know: a version mismatch
    ErrorCode.UNSUPPORTED_VERSION: 500,
    ErrorCode.DUPLICATE_ID: 500,
    ErrorCode.UNKNOWN_MODEL: 404,  # never served here (a served model whose workers are gone: no_workers, 503)
    UNAUTHORIZED: 401,
    NOT_FOUND: 404,
    BROKER_UNREACHABLE: 503,
}

# TEI's error_type for each status (router/src/http/types.rs ErrorType).
TEI_ERROR_TYPE = {401: "Unauthorized", 404: "NotFound", 413: "Validation", 422: "Validation", 429: "Overloaded",
                  503: "Unhealthy", 504: "Backend", 500: "Backend"}


class Shape(str, Enum):
    """The API a route speaks, which decides its error body."""

    TEI = "tei"
    COHERE = "cohere"  # /v2/rerank
    V1 = "v1"  # /v1/rerank: Cohere v1 and Jina
    POOL = "pool"


class ApiError(Exception):
    """An error for the HTTP caller: a pool error code, its status, and a message that says what to fix."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return STATUS_BY_CODE.get(self.code, 500)

    @classmethod
    def from_pool(cls, exc: RerankPoolError) -> "ApiError":
        if isinstance(exc, ServerError):
            return cls(exc.code, exc.message)
        if isinstance(exc, NoReply):
            return cls(BROKER_UNREACHABLE, f"the broker did not answer: {exc}")
        return cls(ErrorCode.WORKER_ERROR, str(exc))


def error_body(shape: Shape, error: ApiError) -> Any:
    """The JSON body of ``error`` in the shape's own error format."""
    if shape is Shape.TEI:
        return {"error": error.message, "error_type": TEI_ERROR_TYPE.get(error.status, "Backend")}
    if shape is Shape.COHERE:
        return {"message": error.message}
    if shape is Shape.V1:  # Cohere v1 reads "message"; Jina, FastAPI-style, "detail"
        return {"message": error.message, "detail": error.message}
    return {"error": {"code": error.code, "message": error.message}}


def validation_message(errors: list[dict[str, Any]]) -> str:
    """A readable message from pydantic's errors: where each problem is, and what was expected.

    A body that may take one of several shapes (TEI's or Infinity's ``/rerank``) fails
    once per shape; only the shape the caller meant is reported: the one whose fields
    were sent (fewest "missing" errors), so the message speaks of the fields they used.
    """
    errors = _closest_shape(errors)
    parts = []
    for err in errors[:5]:
        if err.get("type") == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", "invalid JSON")
            return f"the body is not valid JSON (near character {err.get('loc', ('', '?'))[-1]}): {reason}"
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid request body: " + "; ".join(parts) + more


def _closest_shape(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for err in errors:
        loc = tuple(err.get("loc", ()))
        if len(loc) < 2 or loc[0] != "body" or not str(loc[1])[:1].isupper():
            return errors  # not a choice between shapes
        groups.setdefault(str(loc[1]), []).append({**err, "loc": ("body", *loc[2:])})
    if len(groups) < 2:
        return errors
    return min(groups.values(), key=lambda errs: sum(e.get("type") == "missing" for e in errs))
