"""Prometheus metrics at ``/metrics``: the whole pool's (from the broker), and this gateway's own.

The pool's figures live in the broker (``rerankpool.broker.metrics``): a gateway holds no
state, so every gateway renders the same pool figures from the broker's ``stats`` reply
at scrape time. The gateway's HTTP figures are its own; with several gateway processes
on one port they are shared through ``prometheus_client``'s multiprocess mode, so a
scrape sees every process whichever one answers it.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

PREFIX = "rerankpool_"

HTTP_LATENCY_BUCKETS_S = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5,
                          1.0, 2.5, 5.0, 10.0, 30.0)

# Every metric, with its meaning: the README's table is this list.
POOL_HISTOGRAMS = {
    "request_duration_seconds": "time from a scoring request's arrival at the broker to its answer",
    "queue_duration_seconds": "mean wait of a batch's pairs in the broker's queue, per batch",
    "tokenize_duration_seconds": "time a worker spent tokenizing a batch",
    "inference_duration_seconds": "time a worker spent running a batch through the model",
    "batch_size_pairs": "pairs per batch sent to a worker",
    "batch_tokens": "real (unpadded) tokens per batch",
}
HTTP_REQUESTS = "http_requests_total"
HTTP_DURATION = "http_request_duration_seconds"


class GatewayMetrics:
    """This gateway's own HTTP counters, and the rendering of the pool's."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = "PROMETHEUS_MULTIPROC_DIR" in os.environ
        if self.multiprocess:  # the metrics below are then written to files every process can read
            MultiProcessCollector(self.registry)
            own: CollectorRegistry | None = None
        else:
            own = self.registry
        self.requests = Counter(PREFIX + HTTP_REQUESTS.removesuffix("_total"),
                                "HTTP requests answered by this gateway, by route, method and status",
                                ["route", "method", "status"], registry=own)
        self.duration = Histogram(PREFIX + HTTP_DURATION, "HTTP request latency at this gateway, by route",
                                  ["route"], buckets=HTTP_LATENCY_BUCKETS_S, registry=own)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.duration.labels(route).observe(seconds)

    def render(self, stats: dict[str, Any] | None) -> bytes:
        """The exposition text: the pool's metrics from a ``stats`` reply (None: broker down), then ours."""
        pool = CollectorRegistry()
        pool.register(_PoolCollector(stats))
        return generate_latest(pool) + generate_latest(self.registry)


class _PoolCollector:
    """Prometheus families built from one broker ``stats`` reply."""

    def __init__(self, stats: dict[str, Any] | None) -> None:
        self.stats = stats

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(PREFIX + "broker_up", "1 if the broker answered this scrape's stats request, else 0")
        up.add_metric([], 0.0 if self.stats is None else 1.0)
        yield up
        if self.stats is None:
            return
        s = self.stats
        m = s["metrics"]
        requests = CounterMetricFamily(PREFIX + "requests", "requests answered by the broker, by op, outcome "
                                       "(ok, or the error code) and model (\"\" before one was resolved)",
                                       labels=["op", "outcome", "model"])
        overloaded = 0
        for row in m["requests"]:
            requests.add_metric([row["op"], row["outcome"], row.get("model", "")], row["count"])
            overloaded += row["count"] if row["outcome"] == "overloaded" else 0
        yield requests
        yield _counter("overload_refusals", "requests refused at once because the queue bound was reached",
                       overloaded)
        queued = GaugeMetricFamily(PREFIX + "queued_pairs", "pairs waiting in the broker's queue, by model and "
                                   "length bucket (upper bound in estimated tokens)", labels=["model", "bucket"])
        workers = GaugeMetricFamily(PREFIX + "workers_live", "workers registered with the broker and answering "
                                    "heartbeats, by model", labels=["model"])
        scored = CounterMetricFamily(PREFIX + "pairs_scored", "pairs scored by the pool, by model", labels=["model"])
        for model in s["models"]:
            for bucket, depth in model["queue_buckets"].items():
                queued.add_metric([model["name"], bucket], depth)
            workers.add_metric([model["name"]], model["workers"])
            scored.add_metric([model["name"]], model["pairs_scored"])
        yield from (queued, workers, scored)
        yield _gauge("requests_in_flight", "scoring requests admitted and not yet answered", s["requests_in_flight"])
        yield _gauge("batches_in_flight", "batches sent to workers and not yet answered", s["batches_in_flight"])
        yield _counter("batches_requeued", "batches retried after their worker died or failed them",
                       s["batches_requeued"])
        yield _counter("workers_lost", "workers declared dead after missing their heartbeats", s["workers_lost"])
        yield _counter("poison_pairs", "pairs isolated as poison: their request got worker_error", m["poison_pairs"])
        padded, real = m["padded_tokens"], m["real_tokens"]
        yield _gauge("padding_ratio", "share of the tokens computed that were padding, since the broker started",
                     (padded - real) / padded if padded else 0.0)
        for name, help_text in POOL_HISTOGRAMS.items():
            h = m["histograms"][name]
            cumulative, buckets = 0, []
            for bound, count in zip([*h["bounds"], float("inf")], h["counts"]):
                cumulative += count
                buckets.append((_le(bound), cumulative))
            family = HistogramMetricFamily(PREFIX + name, help_text)
            family.add_metric([], buckets, sum_value=h["sum"])
            yield family


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, help_text, value=value)


def _counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, help_text, value=value)
