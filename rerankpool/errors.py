"""One exception tree for everything a rerankpool client can raise::

    RerankPoolError
    ├── ServerError              the broker answered with an error (``.code``, ``.message``)
    │   ├── BadRequest           malformed or invalid request, over a limit, unknown op, wrong version
    │   │   └── UnknownModel     the request names a model the pool has never served
    │   ├── Overloaded           the broker's queue is full: back off and retry
    │   ├── NoWorkers            no worker was connected before the deadline
    │   ├── DeadlineExceeded     the request's deadline passed (also a TimeoutError)
    │   ├── WorkerFailed         the model failed on this input
    │   └── ShuttingDown         the broker is draining
    └── NoReply                  no answer at all within the timeout, after retries (also a TimeoutError)
"""

from __future__ import annotations

from rerankpool.protocol import ErrorCode


class RerankPoolError(Exception):
    """Base of every error raised by the rerankpool client."""


class ServerError(RerankPoolError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class BadRequest(ServerError):
    pass


class UnknownModel(BadRequest):
    pass


class Overloaded(ServerError):
    pass


class NoWorkers(ServerError):
    pass


class DeadlineExceeded(ServerError, TimeoutError):
    pass


class WorkerFailed(ServerError):
    pass


class ShuttingDown(ServerError):
    pass


class NoReply(RerankPoolError, TimeoutError):
    pass


_BY_CODE: dict[str, type[ServerError]] = {
    ErrorCode.BAD_REQUEST: BadRequest,
    ErrorCode.UNSUPPORTED_VERSION: BadRequest,
    ErrorCode.UNKNOWN_OP: BadRequest,
    ErrorCode.TOO_LARGE: BadRequest,
    ErrorCode.DUPLICATE_ID: BadRequest,
    ErrorCode.UNKNOWN_MODEL: UnknownModel,
    ErrorCode.OVERLOADED: Overloaded,
    ErrorCode.NO_WORKERS: NoWorkers,
    ErrorCode.TIMEOUT: DeadlineExceeded,
    ErrorCode.WORKER_ERROR: WorkerFailed,
    ErrorCode.SHUTTING_DOWN: ShuttingDown,
}


def error_from_reply(code: str, message: str) -> ServerError:
    return _BY_CODE.get(code, ServerError)(code, message)
