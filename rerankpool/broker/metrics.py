"""The pool's cumulative metrics, kept by the broker and read through the ``stats`` op.

Plain counters and fixed-bucket histograms, with no sockets and no Prometheus import:
the broker observes each batch and each answered request (a few list updates), and
any HTTP gateway renders them in Prometheus' exposition format (``rerankpool.http.metrics``).
A gateway holds no state, so the figures for the whole pool must live here.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

# Bucket upper bounds, in base units (seconds, pairs, tokens), as Prometheus names them.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25,
                     0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024)
BATCH_TOKENS_BUCKETS = (64, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144)


@dataclass
class Histogram:
    """Counts per bucket (not cumulative; the last one is +Inf), their sum and their count."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = self.counts or [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def as_dict(self) -> dict[str, Any]:
        return {"bounds": list(self.bounds), "counts": list(self.counts), "sum": self.total}


class PoolMetrics:
    """What the broker counts for the whole pool, beyond the live gauges of ``stats``.

    ``requests`` is keyed by (op, outcome, model): ``ok`` or the error code the client got, and
    the served model it named ("" for a request refused before a served model was known).
    """

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = {}
        self.poison_pairs = 0
        self.real_tokens = 0
        self.padded_tokens = 0
        self.histograms: dict[str, Histogram] = {
            "request_duration_seconds": Histogram(LATENCY_BUCKETS_S),
            "queue_duration_seconds": Histogram(LATENCY_BUCKETS_S),
            "tokenize_duration_seconds": Histogram(LATENCY_BUCKETS_S),
            "inference_duration_seconds": Histogram(LATENCY_BUCKETS_S),
            "batch_size_pairs": Histogram(BATCH_SIZE_BUCKETS),
            "batch_tokens": Histogram(BATCH_TOKENS_BUCKETS),
        }

    def outcome(self, op: str, outcome: str, model: str = "") -> None:
        key = (op, outcome, model)
        self.requests[key] = self.requests.get(key, 0) + 1

    def request_done(self, duration_s: float) -> None:
        self.histograms["request_duration_seconds"].observe(duration_s)

    def batch_done(self, size: int, real_tokens: int, padded_tokens: int, queue_s: float, tokenize_s: float,
                   inference_s: float) -> None:
        h = self.histograms
        h["batch_size_pairs"].observe(size)
        h["batch_tokens"].observe(real_tokens)
        h["queue_duration_seconds"].observe(queue_s)
        h["tokenize_duration_seconds"].observe(tokenize_s)
        h["inference_duration_seconds"].observe(inference_s)
        self.real_tokens += real_tokens
        self.padded_tokens += padded_tokens

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": [{"op": op, "outcome": outcome, "model": model, "count": n}
                         for (op, outcome, model), n in sorted(self.requests.items())],
            "poison_pairs": self.poison_pairs,
            "real_tokens": self.real_tokens,
            "padded_tokens": self.padded_tokens,
            "histograms": {name: h.as_dict() for name, h in self.histograms.items()},
        }
