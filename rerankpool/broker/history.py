"""The pool's recent past, one row a second: what the dashboard and ``rerankpool top`` draw.

Pure logic: the broker tells ``History`` what happens (each answered request, each scored
batch, each error, each host sample its workers send with their heartbeats), and once a second
``roll`` closes the second into a row: throughput, latency percentiles, the stage times,
padding, the queue, and per worker, per model and per host figures. The last ``seconds`` rows
are kept (five minutes by default), so the memory is bounded whatever the load; the cost to the
broker is a few list appends per batch and per request, and one row a second.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RECENT_ERRORS = 20  # error messages kept for the dashboard
RECENT_S = 10.0  # the window of ``recent``: request latencies older than this are dropped as new ones come
LOST_SHOWN_S = 60.0  # how long a worker that went away stays in the rows, as "lost"


@dataclass
class _Second:
    """What happened during the second being filled."""

    latencies_ms: list[float] = field(default_factory=list)
    pairs: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    queue_ms: list[float] = field(default_factory=list)
    tokenize_ms: list[float] = field(default_factory=list)
    inference_ms: list[float] = field(default_factory=list)
    real_tokens: int = 0
    padded_tokens: int = 0
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> pairs, batches, batch times, errors
    models: dict[str, int] = field(default_factory=dict)  # model -> pairs scored


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


class History:
    """Rows of the last ``seconds`` seconds, and the latest sample of each host."""

    def __init__(self, seconds: int = 300) -> None:
        self.rows: deque[dict[str, Any]] = deque(maxlen=seconds)
        self.hosts: dict[str, dict[str, Any]] = {}  # host -> its latest sample, with when it came ("t")
        self.errors: deque[dict[str, Any]] = deque(maxlen=RECENT_ERRORS)
        self._latencies: deque[tuple[float, float]] = deque(maxlen=200_000)  # (when, ms) of the last RECENT_S
        self._lost: dict[str, tuple[float, dict[str, Any]]] = {}  # workers gone: when, their last figures
        self._now = _Second()

    # -- what happens -------------------------------------------------------------------

    def request_done(self, latency_ms: float, when: float | None = None) -> None:
        when = time.time() if when is None else when
        self._now.latencies_ms.append(latency_ms)
        self._latencies.append((when, latency_ms))
        while self._latencies[0][0] < when - RECENT_S:
            self._latencies.popleft()

    def error(self, code: str, message: str, when: float | None = None) -> None:
        errors = self._now.errors
        errors[code] = errors.get(code, 0) + 1
        self.errors.append({"t": time.time() if when is None else when, "code": code, "message": message[:300]})

    def batch_done(self, worker: str, model: str, pairs: int, queue_ms: float, tokenize_ms: float,
                   inference_ms: float, round_trip_ms: float, real_tokens: int, padded_tokens: int) -> None:
        now = self._now
        now.pairs += pairs
        now.queue_ms.append(queue_ms)
        now.tokenize_ms.append(tokenize_ms)
        now.inference_ms.append(inference_ms)
        now.real_tokens += real_tokens
        now.padded_tokens += padded_tokens
        w = now.workers.setdefault(worker, {"pairs": 0, "batches": 0, "batch_ms": [], "errors": 0})
        w["pairs"] += pairs
        w["batches"] += 1
        w["batch_ms"].append(round_trip_ms)
        now.models[model] = now.models.get(model, 0) + pairs

    def batch_failed(self, worker: str) -> None:
        w = self._now.workers.setdefault(worker, {"pairs": 0, "batches": 0, "batch_ms": [], "errors": 0})
        w["errors"] += 1

    def host_sample(self, host: str, sample: dict[str, float], when: float) -> None:
        self.hosts[host] = {**{k: float(v) for k, v in sample.items() if isinstance(v, (int, float))}, "t": when}

    # -- once a second ------------------------------------------------------------------

    def roll(self, when: float, elapsed_s: float, queued_pairs: int, requests_in_flight: int,
             workers: list[dict[str, Any]], models: list[dict[str, Any]]) -> dict[str, Any]:
        """Close the second that just ended (``elapsed_s`` long) into a row, and start the next.

        ``workers``: the live ones (``name``, ``model``, ``heartbeat_age_s``, ``in_flight``, ``silent``: its
        heartbeats are late); ``models``: the served ones (``name``, ``workers``, ``queued_pairs``). Each
        worker's ``state`` is ``silent``, ``slow`` (its p95 batch time over twice the median of its peers')
        or ``ok``: what the dashboard flags. A worker that went away stays ``LOST_SHOWN_S`` as ``lost``.
        """
        now, self._now = self._now, _Second()
        per_s = 1.0 / max(elapsed_s, 1e-3)
        padded = now.padded_tokens
        row = {
            "t": when,
            "pairs_per_s": now.pairs * per_s,
            "requests_per_s": len(now.latencies_ms) * per_s,
            "errors_per_s": sum(now.errors.values()) * per_s,
            "errors": now.errors,
            "latency_p50_ms": _pct(now.latencies_ms, 50),
            "latency_p95_ms": _pct(now.latencies_ms, 95),
            "latency_p99_ms": _pct(now.latencies_ms, 99),
            "queue_ms": _mean(now.queue_ms),
            "tokenize_ms": _mean(now.tokenize_ms),
            "inference_ms": _mean(now.inference_ms),
            "batches": len(now.inference_ms),
            "padding_pct": 100.0 * (padded - now.real_tokens) / padded if padded else None,
            "queued_pairs": queued_pairs,
            "requests_in_flight": requests_in_flight,
            "workers": {
                w["name"]: {
                    "model": w["model"], "heartbeat_age_s": w["heartbeat_age_s"], "in_flight": w["in_flight"],
                    "pairs_per_s": now.workers.get(w["name"], {}).get("pairs", 0) * per_s,
                    "batches": now.workers.get(w["name"], {}).get("batches", 0),
                    "batch_p95_ms": _pct(now.workers.get(w["name"], {}).get("batch_ms", []), 95),
                    "errors": now.workers.get(w["name"], {}).get("errors", 0),
                }
                for w in workers
            },
            "models": {m["name"]: {"workers": m["workers"], "queued_pairs": m["queued_pairs"],
                                   "pairs_per_s": now.models.get(m["name"], 0) * per_s} for m in models},
        }
        p95s = [w["batch_p95_ms"] for w in row["workers"].values() if w["batch_p95_ms"] is not None]
        typical = float(np.median(p95s)) if len(p95s) >= 2 else None
        for w, stats in zip(workers, row["workers"].values()):
            slow = typical is not None and (stats["batch_p95_ms"] or 0.0) > 2 * typical
            stats["state"] = "silent" if w.get("silent") else "slow" if slow else "ok"
        if self.rows:
            for name, stats in self.rows[-1]["workers"].items():
                if name not in row["workers"] and stats["state"] != "lost":
                    self._lost[name] = (self.rows[-1]["t"], stats)  # last seen then
        for name, (gone_at, stats) in list(self._lost.items()):
            if when - gone_at > LOST_SHOWN_S or name in row["workers"]:
                del self._lost[name]
                continue
            row["workers"][name] = {**stats, "state": "lost", "in_flight": 0, "pairs_per_s": 0.0, "batches": 0,
                                    "heartbeat_age_s": stats["heartbeat_age_s"] + when - gone_at}
        self.rows.append(row)
        return row

    def recent(self, when: float, window_s: float = RECENT_S) -> dict[str, Any]:
        """The last ``window_s`` seconds in one line: rates, exact latency percentiles, the stage breakdown."""
        latencies = [ms for t, ms in self._latencies if t >= when - window_s]
        rows = [r for r in self.rows if r["t"] >= when - window_s]
        seconds = max(1, len(rows))
        batches = sum(r["batches"] for r in rows)

        def stage(name: str) -> float | None:  # the mean over the window's batches
            weighted = [(r[name], r["batches"]) for r in rows if r[name] is not None]
            return sum(v * n for v, n in weighted) / batches if batches else None

        return {"window_s": window_s, "pairs_per_s": sum(r["pairs_per_s"] for r in rows) / seconds,
                "requests_per_s": sum(r["requests_per_s"] for r in rows) / seconds,
                "latency_p50_ms": _pct(latencies, 50), "latency_p95_ms": _pct(latencies, 95),
                "latency_p99_ms": _pct(latencies, 99),
                **{name: stage(name) for name in ("queue_ms", "tokenize_ms", "inference_ms")}}

    def as_dict(self) -> dict[str, Any]:
        """What the ``stats`` op sends when asked for the history."""
        return {"rows": list(self.rows), "hosts": self.hosts, "errors": list(self.errors)}
