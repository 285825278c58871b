"""Summary statistics for benchmark series (latencies, utilisation, memory).

Kept dependency-light (numpy only) so that bench reports and tests agree on
one definition of "p95" and "std".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import numpy as np

PERCENTILES: tuple[int, ...] = (50, 75, 90, 95, 99)


@dataclass(frozen=True)
class Summary:
    """Descriptive statistics of one series.

    Every field except ``count`` is ``None`` when it is undefined (empty
    series; ``std`` with fewer than two values), never a made-up zero, so a
    report can tell "no data" from "measured zero".
    """

    count: int
    avg: float | None = None
    min: float | None = None
    max: float | None = None
    std: float | None = None
    p50: float | None = None
    p75: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None

    def as_dict(self) -> dict[str, float | int | None]:
        """Plain dict, for JSON reports."""
        return asdict(self)


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _clean(values: Iterable[float | int | None]) -> np.ndarray:
    """Drop missing readings (None, NaN): a column read from a time series has gaps."""
    kept = [float(v) for v in values if not _is_missing(v)]
    return np.asarray(kept, dtype=np.float64)


def describe(values: Iterable[float | int | None]) -> Summary:
    """Summarise ``values``.

    - ``None`` and NaN entries are dropped first; ``count`` is what remains.
    - ``std`` is the *sample* standard deviation (ddof=1), the usual choice for
      a set of repeated measurements; it is ``None`` when fewer than 2 values.
    - Percentiles use linear interpolation between closest ranks, the same as
      ``numpy.percentile``'s default method.
    """
    arr = _clean(values)
    n = int(arr.size)
    if n == 0:
        return Summary(count=0)
    p50, p75, p90, p95, p99 = (float(p) for p in np.percentile(arr, PERCENTILES))
    return Summary(
        count=n,
        avg=float(arr.mean()),
        min=float(arr.min()),
        max=float(arr.max()),
        std=float(arr.std(ddof=1)) if n > 1 else None,
        p50=p50,
        p75=p75,
        p90=p90,
        p95=p95,
        p99=p99,
    )


def correlation(xs: Sequence[float | int | None], ys: Sequence[float | int | None]) -> float | None:
    """Pearson correlation of paired series, e.g. batch size vs. inference time.

    Pairs where either side is missing (None/NaN) are dropped. Returns ``None``
    when the coefficient is undefined: fewer than 2 pairs, or either series
    is constant. Raises ``ValueError`` if the series differ in length, since
    that means they were not paired in the first place.
    """
    if len(xs) != len(ys):
        raise ValueError(f"correlation needs paired series, got {len(xs)} and {len(ys)} values")
    pairs = [(float(x), float(y)) for x, y in zip(xs, ys) if not (_is_missing(x) or _is_missing(y))]
    if len(pairs) < 2:
        return None
    arr = np.asarray(pairs, dtype=np.float64)
    dx = arr[:, 0] - arr[:, 0].mean()
    dy = arr[:, 1] - arr[:, 1].mean()
    denom = math.sqrt(float(dx @ dx) * float(dy @ dy))
    if denom == 0.0:
        return None
    r = float(dx @ dy) / denom
    return max(-1.0, min(1.0, r))  # clamp rounding spill past +-1
