"""Derived numbers of a sweep: the one place that decides what each metric means.

The report, the plots and the comparison all read their numbers from here,
so a table and a plot of the same metric cannot disagree.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from rerankpool.bench.results import ConfigResult
from rerankpool.stats.summary import Summary, correlation, describe

__all__ = [
    "ConfigStats",
    "config_stats",
    "LatencyBucket",
    "latency_buckets",
    "batch_metric",
    "StageBreakdown",
    "stage_breakdown",
    "HopBreakdown",
    "hop_breakdown",
    "WorkerStats",
    "worker_stats",
    "Series",
    "SERIES",
    "elapsed",
    "series_values",
    "series_summary",
    "present_series",
]


@dataclass(frozen=True)
class ConfigStats:
    """Client-side statistics of one config, over the requests that succeeded."""

    config: ConfigResult
    latency_ms: Summary
    #: Per-request throughput (pairs / latency of that request).
    request_tp: Summary
    #: Pearson r of latency vs per-request throughput; None when undefined.
    correlation: float | None

    @property
    def aggregate_tp(self) -> float:
        return self.config.aggregate_pairs_per_s

    def summary_row(self) -> dict[str, Any]:
        """The Results Summary row, keyed as ``compare.parse_reference_report`` returns rows.

        ``tp_avg`` is the aggregate (pairs / wall time), ``tp_p50``/``tp_p95``
        are per-request percentiles: what the reference's TP Avg/TP P95 hold.
        """
        c = self.config
        return {
            "batch": c.batch,
            "conc": c.concurrency,
            "workers": c.workers,
            "engine": c.engine,
            "pairs": c.pairs,
            "time_s": c.wall_s,
            "lat_avg_ms": self.latency_ms.avg,
            "lat_p95_ms": self.latency_ms.p95,
            "lat_p99_ms": self.latency_ms.p99,
            "tp_avg": self.aggregate_tp,
            "tp_p50": self.request_tp.p50,
            "tp_p95": self.request_tp.p95,
            "failed": c.failed_requests,
        }


def config_stats(config: ConfigResult) -> ConfigStats:
    ok = config.ok_requests
    latencies = [r.latency_ms for r in ok]
    tps = [r.throughput_pairs_per_s for r in ok]
    return ConfigStats(config, describe(latencies), describe(tps), correlation(latencies, tps))


@dataclass(frozen=True)
class LatencyBucket:
    """Requests whose latency falls in [low_ms, high_ms); None means unbounded."""

    label: str
    low_ms: float | None
    high_ms: float | None
    request_tp: Summary


def latency_buckets(config: ConfigResult, latency: Summary) -> list[LatencyBucket]:
    """Split requests at the latency P50/P75/P90, as the reference reports do.

    Shows how per-request throughput falls off in the latency tail; empty
    when there are no successful requests.
    """
    if latency.count == 0:
        return []
    edges = [
        ("P50", None, latency.p50),
        ("P50-P75", latency.p50, latency.p75),
        ("P75-P90", latency.p75, latency.p90),
        ("P90+", latency.p90, None),
    ]
    ok = config.ok_requests
    buckets = []
    for label, low, high in edges:
        tps = [
            r.throughput_pairs_per_s
            for r in ok
            if (low is None or r.latency_ms >= low) and (high is None or r.latency_ms < high)
        ]
        buckets.append(LatencyBucket(label, low, high, describe(tps)))
    return buckets


# --- batch-level metrics (from the workers' batch events) -------------------------------


def batch_metric(configs: Iterable[ConfigResult], attr: str) -> Summary:
    """Summary of one per-batch field (``tokenize_ms``, ``padding_waste_pct``...) over all configs."""
    return describe([getattr(e, attr) for c in configs for e in c.batch_events])


@dataclass(frozen=True)
class StageBreakdown:
    """Where a pair's client-observed time went, pair-weighted, summed over configs (ms).

    ``other_ms`` is client time not spent in the three measured stages:
    broker routing, (de)serialisation, network, and waiting for the other
    batches of the same request. It is None when there are no requests to
    measure client time from.
    """

    tokenize_ms: float
    queue_wait_ms: float
    inference_ms: float
    other_ms: float | None
    pairs: int

    @property
    def total_ms(self) -> float:
        return self.tokenize_ms + self.queue_wait_ms + self.inference_ms + (self.other_ms or 0.0)

    def pct(self, part_ms: float | None) -> float | None:
        if part_ms is None or self.total_ms <= 0:
            return None
        return 100.0 * part_ms / self.total_ms

    def per_pair_ms(self, part_ms: float | None) -> float | None:
        if part_ms is None or self.pairs <= 0:
            return None
        return part_ms / self.pairs


def stage_breakdown(configs: Iterable[ConfigResult]) -> StageBreakdown | None:
    """Each batch's stage time counted once per pair in it, against each pair's request latency.

    None when no config has batch events.
    """
    tok = queue = inf = client = 0.0
    pairs = 0
    have_requests = False
    have_events = False
    for c in configs:
        for e in c.batch_events:
            have_events = True
            tok += e.size * e.tokenize_ms
            queue += e.size * e.queue_wait_ms
            inf += e.size * e.inference_ms
            pairs += e.size
        for r in c.ok_requests:
            have_requests = True
            client += r.pairs * r.latency_ms
    if not have_events:
        return None
    other = max(0.0, client - (tok + queue + inf)) if have_requests else None
    return StageBreakdown(tok, queue, inf, other, pairs)


@dataclass(frozen=True)
class HopBreakdown:
    """Where a request's time goes, hop by hop: medians over one config's requests and batches (ms).

    Batch-level parts are medians of per-batch differences: ``broker_worker_ms`` is the
    broker's round trip minus the worker's own time (the wire both ways and the worker's
    socket thread), ``handoffs_ms`` the worker's time outside tokenizing and inference,
    ``device_ipc_ms`` inference minus the device process's time (0 without one), and
    ``model_ms`` the device process's time, or the worker's inference where it runs the model.
    ``client_broker_ms`` is the request's p50 minus the batches' p50 round trip: the
    client, the broker's own work and the wire between them, and, where a request was
    split, the wait for its slower batch. With ``hop_breakdown``'s ``slowest_pct``, every
    median is over the slowest requests and batches only.
    """

    requests: int
    batches: int
    request_ms: float
    client_broker_ms: float
    broker_worker_ms: float
    handoffs_ms: float
    tokenize_ms: float
    device_ipc_ms: float
    model_ms: float


TAIL_PCT = 2.0  # the slowest share of batches that the hop table breaks down on its own row
TAIL_MIN_BATCHES = 100  # fewer batches than this make no tail row (2 % of them would be one or two)


def hop_breakdown(config: ConfigResult, slowest_pct: float | None = None) -> HopBreakdown | None:
    """The hops of one config's requests; None without requests or hop timings (older results).

    ``slowest_pct``: the same over the slowest share of batches (by round trip) and of
    requests, to tell which hops a tail comes from; None with fewer than
    ``TAIL_MIN_BATCHES`` batches.
    """
    events = [e for e in config.batch_events if e.round_trip_ms is not None and e.worker_ms]
    latencies = [r.latency_ms for r in config.ok_requests]
    if not events or not latencies:
        return None

    def median(values: Iterable[float]) -> float:
        return float(np.median(list(values)))

    if slowest_pct is not None:
        if len(events) < TAIL_MIN_BATCHES:
            return None
        cut = float(np.percentile([e.round_trip_ms for e in events], 100 - slowest_pct))
        events = [e for e in events if e.round_trip_ms >= cut]
        cut = float(np.percentile(latencies, 100 - slowest_pct))
        latencies = [ms for ms in latencies if ms >= cut]
    request_ms = median(latencies)
    device = [e.device_ms or 0.0 for e in events]
    return HopBreakdown(
        requests=len(latencies),
        batches=len(events),
        request_ms=request_ms,
        client_broker_ms=request_ms - median(e.round_trip_ms for e in events),
        broker_worker_ms=median(e.round_trip_ms - e.worker_ms for e in events),
        handoffs_ms=median(e.worker_ms - e.tokenize_ms - e.inference_ms for e in events),
        tokenize_ms=median(e.tokenize_ms for e in events),
        device_ipc_ms=median(e.inference_ms - d for e, d in zip(events, device)) if any(device) else 0.0,
        model_ms=median(device) if any(device) else median(e.inference_ms for e in events),
    )


@dataclass(frozen=True)
class WorkerStats:
    worker: str
    batches: int
    pairs: int
    inference_ms: Summary
    #: This worker's pairs / summed wall time of all configs: its share of the aggregate.
    pairs_per_s: float
    #: (tokenize + inference) / summed wall time, %: how close it is to saturation.
    busy_pct: float


def worker_stats(configs: list[ConfigResult]) -> list[WorkerStats]:
    wall_s = sum(c.wall_s for c in configs)
    events = defaultdict(list)
    for c in configs:
        for e in c.batch_events:
            events[e.worker].append(e)
    out = []
    for worker in sorted(events, key=_natural_key):
        evs = events[worker]
        pairs = sum(e.size for e in evs)
        busy_ms = sum(e.tokenize_ms + e.inference_ms for e in evs)
        out.append(
            WorkerStats(
                worker=worker,
                batches=len(evs),
                pairs=pairs,
                inference_ms=describe([e.inference_ms for e in evs]),
                pairs_per_s=pairs / wall_s if wall_s > 0 else 0.0,
                busy_pct=100.0 * busy_ms / (wall_s * 1000.0) if wall_s > 0 else 0.0,
            )
        )
    return out


def _natural_key(text: str) -> list[Any]:
    """"worker-10" after "worker-2"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


# --- time-series columns (from the probe samples) --------------------------------------

_GPU_UTIL = re.compile(r"^(gpu\.\d+|metal)\.util_pct$")
_GPU_MEM = re.compile(r"^(?:gpu\.\d+\.mem_used_mb|metal\.mem_in_use_mb)$")
_WORKER_CPU = re.compile(r"^proc\.worker[^.]*\.cpu_pct$")


def _mean_of(pattern: re.Pattern[str]) -> Callable[[dict[str, Any]], float | None]:
    def read(row: dict[str, Any]) -> float | None:
        vals = [v for k, v in row.items() if pattern.match(k) and v is not None]
        return sum(vals) / len(vals) if vals else None

    return read


def _sum_of(pattern: re.Pattern[str]) -> Callable[[dict[str, Any]], float | None]:
    def read(row: dict[str, Any]) -> float | None:
        vals = [v for k, v in row.items() if pattern.match(k) and v is not None]
        return sum(vals) if vals else None

    return read


def _key(name: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda row: row.get(name)


@dataclass(frozen=True)
class Series:
    """A derived time-series column: its title, unit, and how to read it from one sample row."""

    name: str
    title: str
    unit: str
    read: Callable[[dict[str, Any]], float | None]
    definition: str


SERIES: dict[str, Series] = {
    s.name: s
    for s in [
        Series("cpu_pct", "CPU Usage", "%", _key("system.cpu_pct"),
               "machine-wide CPU, % of all cores (`system.cpu_pct`)"),
        Series("cpu_steal_pct", "CPU Steal", "%", _key("system.cpu_steal_pct"),
               "CPU time the hypervisor gave other guests while this machine wanted it, % of all cores "
               "(`system.cpu_steal_pct`, Linux VMs): when it rises, every process here slows at once"),
        Series("broker_cpu_pct", "Broker CPU", "%", _key("proc.broker.cpu_pct"),
               "broker process CPU, % of one core (`proc.broker.cpu_pct`)"),
        Series("workers_cpu_pct", "Workers CPU Sum", "%", _sum_of(_WORKER_CPU),
               "summed CPU of the worker processes, % of one core (`proc.worker-*.cpu_pct`)"),
        Series("gpu_util_pct", "GPU Utilization", "%", _mean_of(_GPU_UTIL),
               "busy share of the GPU, averaged over GPUs per sample (`gpu.<i>.util_pct`, `metal.util_pct`)"),
        Series("gpu_mem_mb", "GPU Memory", "MB", _sum_of(_GPU_MEM),
               "GPU memory in use, summed over GPUs per sample, MiB (`gpu.<i>.mem_used_mb`, "
               "`metal.mem_in_use_mb`; Metal's figure is system-wide, not per process)"),
        Series("queue_pairs", "Queue Depth", "pairs", _key("pool.queue_pairs"),
               "pairs waiting in the broker's batcher (`pool.queue_pairs`)"),
        Series("batches_in_flight", "Batches in Flight", "batches", _key("pool.batches_in_flight"),
               "batches dispatched to workers and not yet answered (`pool.batches_in_flight`)"),
        Series("pairs_per_s", "Pool Throughput", "pairs/s", _key("pool.pairs_per_s"),
               "pairs the pool completed per second over the last sample interval (`pool.pairs_per_s`)"),
    ]
}


def elapsed(samples: list[dict[str, Any]]) -> list[float | None]:
    """Seconds since the config's first sample, from ``elapsed_s`` (else ``t``); None where a row lacks it.

    Relative to the first sample, so it reads the same whether the sampler
    restarted for this config or ran across the whole sweep.
    """
    key = "elapsed_s" if any(s.get("elapsed_s") is not None for s in samples) else "t"
    values = [s.get(key) for s in samples]
    start = next((v for v in values if v is not None), None)
    return [None if v is None else float(v) - start for v in values]


def series_values(samples: list[dict[str, Any]], name: str) -> list[float | None]:
    """One derived column per sample row (None where the row lacks it)."""
    read = SERIES[name].read
    return [read(s) for s in samples]


def series_summary(configs: Iterable[ConfigResult], name: str) -> Summary:
    """Summary of a derived column over every sample of every config."""
    return describe(v for c in configs for v in series_values(c.samples, name))


def present_series(configs: Iterable[ConfigResult]) -> list[str]:
    """Names of the derived columns for which at least one sample has data, in SERIES order."""
    configs = list(configs)
    return [name for name in SERIES if any(v is not None for c in configs for v in series_values(c.samples, name))]
