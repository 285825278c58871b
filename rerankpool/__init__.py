"""rerankpool: serve cross-encoder rerankers from a pool of worker processes over ZeroMQ."""

from rerankpool.client import AsyncClient, Client, Hit
from rerankpool.errors import (
    BadRequest,
    DeadlineExceeded,
    NoReply,
    NoWorkers,
    Overloaded,
    RerankPoolError,
    ServerError,
    ShuttingDown,
    WorkerFailed,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "BadRequest",
    "Client",
    "DeadlineExceeded",
    "Hit",
    "NoReply",
    "NoWorkers",
    "Overloaded",
    "RerankPoolError",
    "ServerError",
    "ShuttingDown",
    "WorkerFailed",
    "__version__",
]
