"""rerankpool: serve cross-encoder rerankers from a pool of worker processes over ZeroMQ."""

from rerankpool._version import __version__
from rerankpool.client import AsyncClient, Client, Hit, Ranking, Scores, Usage
from rerankpool.errors import (
    BadRequest,
    DeadlineExceeded,
    NoReply,
    NoWorkers,
    Overloaded,
    RerankPoolError,
    ServerError,
    ShuttingDown,
    UnknownModel,
    WorkerFailed,
)
from rerankpool.protocol import Chunking, ModelInfo, Truncation


__all__ = [
    "AsyncClient",
    "BadRequest",
    "Chunking",
    "Client",
    "DeadlineExceeded",
    "Hit",
    "ModelInfo",
    "NoReply",
    "NoWorkers",
    "Overloaded",
    "Ranking",
    "RerankPoolError",
    "Scores",
    "ServerError",
    "ShuttingDown",
    "Truncation",
    "UnknownModel",
    "Usage",
    "WorkerFailed",
    "__version__",
]
