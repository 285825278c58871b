"""The per-batch event a worker streams after each batch it runs.

One event per batch, flattened to ``batch.*`` columns (plus ``t``) so events
go through the same JSON Lines / CSV tooling as the sampler's rows. Column
meanings are documented in ``rerankpool.stats.timeseries.COLUMNS``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

BATCH_EVENT_FIELDS: tuple[str, ...] = (
    "batch.size",
    "batch.tokenize_ms",
    "batch.inference_ms",
    "batch.queue_wait_ms",
    "batch.real_tokens",
    "batch.padded_tokens",
    "batch.padding_waste_pct",
    "batch.worker",
)


def padding_waste_pct(real_tokens: int, padded_tokens: int) -> float | None:
    """Share of computed tokens that were padding, %: 100 * (padded - real) / padded; None if nothing ran."""
    if padded_tokens <= 0:
        return None
    return 100.0 * (padded_tokens - real_tokens) / padded_tokens


@dataclass(frozen=True)
class BatchEvent:
    """What one batch cost, as measured by the worker that ran it.

    ``real_tokens`` is the sum of the pairs' token counts; ``padded_tokens``
    is size x padded sequence length, i.e. what the model actually computed
    over. Their gap is the price of batching pairs of different lengths.
    """

    worker: str
    size: int
    tokenize_ms: float
    inference_ms: float
    queue_wait_ms: float
    real_tokens: int
    padded_tokens: int

    @property
    def padding_waste_pct(self) -> float | None:
        return padding_waste_pct(self.real_tokens, self.padded_tokens)

    def to_row(self, t: float | None = None) -> dict[str, Any]:
        """Flat ``batch.*`` row; ``t`` is the unix time the batch finished (default: now)."""
        row: dict[str, Any] = {
            "t": time.time() if t is None else t,
            "batch.size": self.size,
            "batch.tokenize_ms": self.tokenize_ms,
            "batch.inference_ms": self.inference_ms,
            "batch.queue_wait_ms": self.queue_wait_ms,
            "batch.real_tokens": self.real_tokens,
            "batch.padded_tokens": self.padded_tokens,
            "batch.worker": self.worker,
        }
        waste = self.padding_waste_pct
        if waste is not None:
            row["batch.padding_waste_pct"] = waste
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> BatchEvent:
        """Inverse of ``to_row`` (``t`` and ``batch.padding_waste_pct`` are derived, so dropped)."""
        return cls(
            worker=str(row["batch.worker"]),
            size=int(row["batch.size"]),
            tokenize_ms=float(row["batch.tokenize_ms"]),
            inference_ms=float(row["batch.inference_ms"]),
            queue_wait_ms=float(row["batch.queue_wait_ms"]),
            real_tokens=int(row["batch.real_tokens"]),
            padded_tokens=int(row["batch.padded_tokens"]),
        )
