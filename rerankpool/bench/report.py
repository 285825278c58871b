"""Markdown reports of a sweep, in the layout of the project's reference reports.

The sections and tables follow ``shared/reference/09_*.md`` and ``14_*.md``
so results can be read side by side, with these changes: throughput is
split into aggregate (all clients) and per-request columns, which the
reference mixed under one "TP" heading; a Setup section records where and
how the numbers were taken; a Baseline section compares against an
in-process run measured at the same time; and every metric is defined at
the end. Numbers come from ``rerankpool.bench.analysis``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rerankpool.bench import analysis
from rerankpool.bench.analysis import ConfigStats
from rerankpool.bench.results import ConfigResult, SweepResult
from rerankpool.stats.summary import Summary
from rerankpool.stats.timeseries import BATCH_EVENT_FIELDS, COLUMNS, column_doc

__all__ = [
    "render_report",
    "render_timeseries_report",
    "timeseries_filename",
    "NO_PROBE",
    "DEFINITIONS",
]

NO_PROBE = "n/a (no probe)"
NO_BATCHES = "n/a (no batch events)"
#: Rows of a downsampled time-series table in the ``_timeseries.md`` file.
MAX_TIMESERIES_ROWS = 40


def render_report(result: SweepResult, plots: Sequence[str | Path] = ()) -> str:
    """The main report, ``NAME.md``; ``plots`` are image paths to link, relative to the report."""
    stats = [analysis.config_stats(c) for c in result.configs]
    parts = [
        _header(result),
        _setup(result),
        _results_summary(result, stats),
        _per_model(result),
        _baseline(result, stats),
        _plots(plots),
        _detailed(result, stats),
        _overall(result, stats),
        _dashboard(result),
        _stage_breakdown(result),
        _hops(result),
        _per_worker(result),
        "## Dashboard Time-Series Data\n\n"
        f"Full time-series data is available in: `{timeseries_filename(result)}`",
        _definitions(),
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def timeseries_filename(result: SweepResult) -> str:
    return f"{result.name}_timeseries.md"


# --- formatting helpers ---------------------------------------------------------------


def _f(value: float | None, digits: int = 2, na: str = "n/a") -> str:
    return na if value is None else f"{value:.{digits}f}"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}ms"


def _num(value: Any) -> str:
    """50.0 -> "50", 2.5 -> "2.5": config values as a person typed them."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("-" * (len(h) + 2) for h in headers) + "|",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _varying(result: SweepResult) -> tuple[bool, bool]:
    """Whether workers / engine differ between configs (then they join the config's name)."""
    return (
        len({c.workers for c in result.configs}) > 1,
        len({c.engine for c in result.configs}) > 1,
    )


def _config_name(c: ConfigResult, vary: tuple[bool, bool], long: bool = False) -> str:
    name = f"batch={c.batch}, {'concurrency' if long else 'conc'}={c.concurrency}"
    if vary[0]:
        name += f", workers={c.workers}"
    if vary[1]:
        name += f", engine={c.engine}"
    return name


# --- sections ---------------------------------------------------------------------------


def _batching_line(batching: dict[str, Any]) -> str:
    if not batching:
        return "not recorded"
    if batching.get("enabled") is False:
        return "disabled"
    bits = []
    if batching.get("max_batch") is not None:
        bits.append(f"max_batch={_num(batching['max_batch'])}")
    if batching.get("timeout_ms") is not None:
        bits.append(f"timeout={_num(batching['timeout_ms'])}ms")
    if batching.get("max_batch_tokens") is not None:
        bits.append(f"max_batch_tokens={_num(batching['max_batch_tokens'])}")
    if batching.get("split_min") is not None:
        bits.append(f"split_min={_num(batching['split_min'])}")
    if batching.get("bucket_edges"):
        bits.append(f"buckets={list(batching['bucket_edges'])}")
    return f"enabled ({', '.join(bits)})"


def _header(r: SweepResult) -> str:
    lines = [f"# {r.name}"]
    if r.description:
        lines.append(f"_{r.description}_")
    lines += [
        f"**Timestamp:** {r.timestamp}",
        f"**Model:** `{r.model}`",
        f"**Backend:** `{r.engine}` | **Device:** `{r.device}`",
        f"**Dynamic Batching:** {_batching_line(r.batching)}",
    ]
    return "\n\n".join(lines)


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _setup(r: SweepResult) -> str:
    out = ["## Setup"]
    if not r.real_scores:
        out.append(
            f"> **Warning: the scores of this run are meaningless.** `{r.model}` is a compute "
            "stand-in: it does the work of the model it stands for, but its outputs are not "
            "relevance scores. Use these numbers for speed only, never for ranking quality."
        )
    workers = sorted({c.workers for c in r.configs})
    rows = [
        ("Run", r.title or r.name),
        ("Model", f"`{r.model}` ({r.model_label})" if r.model_label else f"`{r.model}`"),
        ("Scores", "real" if r.real_scores else "**stand-in (meaningless)**"),
        ("Engine", r.engine),
        ("Device", r.device),
        ("dtype", r.dtype),
        ("Workers", ", ".join(map(str, workers)) or "n/a"),
        *([("Worker flags", f"`{r.worker_flags}`")] if r.worker_flags else []),
        *([("Broker flags", f"`{r.broker_flags}`")] if r.broker_flags else []),
        ("Data", r.data or "not recorded"),
        ("Batching", ", ".join(f"{k}={_cell(v)}" for k, v in r.batching.items()) or "not recorded"),
    ]
    out.append(_table(["Item", "Value"], [(k, _cell(v)) for k, v in rows]))
    for title, info in (("Hardware", r.hardware), ("Software", r.software)):
        out.append(f"### {title}")
        if info:
            out.append(_table(["Item", "Value"], [(k, _cell(v)) for k, v in info.items()]))
        else:
            out.append("_Not recorded._")
    return "\n\n".join(out)


def _results_summary(r: SweepResult, stats: list[ConfigStats]) -> str:
    vary = _varying(r)
    any_failed = any(s.config.failed_requests for s in stats)
    headers = ["Batch", "Conc"]
    headers += ["Workers"] if vary[0] else []
    headers += ["Engine"] if vary[1] else []
    headers += ["Pairs", "Time(s)", "Lat Avg", "Lat P95", "Lat P99", "Agg TP (pairs/s)", "Req TP P50", "Req TP P95"]
    headers += ["Failed"] if any_failed else []
    rows = []
    for s in stats:
        row = s.summary_row()
        cells: list[Any] = [row["batch"], row["conc"]]
        cells += [row["workers"]] if vary[0] else []
        cells += [row["engine"]] if vary[1] else []
        cells += [
            row["pairs"],
            f"{row['time_s']:.2f}",
            _ms(row["lat_avg_ms"]),
            _ms(row["lat_p95_ms"]),
            _ms(row["lat_p99_ms"]),
            f"{row['tp_avg']:.1f}",
            _f(row["tp_p50"], 1),
            _f(row["tp_p95"], 1),
        ]
        cells += [row["failed"]] if any_failed else []
        rows.append(cells)
    note = (
        "_Latencies are client-observed. **Agg TP** is all clients together (pairs / wall time of "
        "the config). **Req TP** is per request (its pairs / its latency), one client's view; "
        "with concurrency above 1 it is usually well below the aggregate._"
    )
    return "\n\n".join(["## Results Summary", _table(headers, rows), note])


def _per_model(r: SweepResult) -> str:
    """Several models: each config's pairs/s and latency per model (pairs scored of it / the config's wall time)."""
    rows = []
    for c in r.configs:
        models = sorted({s.model for s in c.requests if s.model is not None})
        for model in models:
            mine = [s for s in c.requests if s.model == model]
            latencies = np.array([s.latency_ms for s in mine])
            pairs = sum(s.pairs for s in mine if s.ok)
            span = max(s.end_s for s in mine) - min(s.start_s for s in mine)
            rate = f"{pairs / span:.1f}" if span > 0 else "-"
            rows.append([c.engine, c.batch, c.concurrency, f"`{model}`", pairs, rate,
                         _ms(float(np.percentile(latencies, 50))), _ms(float(np.percentile(latencies, 99))),
                         sum(not s.ok for s in mine)])
    if not rows:
        return ""
    headers = ["Config", "Batch", "Conc", "Model", "Pairs", "Pairs/s", "Lat P50", "Lat P99", "Failed"]
    note = ("_The requests named the models in turn. **Pairs/s** is a model's pairs scored over the time from its "
            "first request's sending to its last answer._")
    return "\n\n".join(["## Per Model", _table(headers, rows), note])


def _ratio(ours: float, base: float) -> str:
    return f"{ours / base:.2f}×" if base > 0 else "n/a"


def _baseline(r: SweepResult, stats: list[ConfigStats]) -> str:
    if not r.baselines:
        return ""
    vary = _varying(r)
    out = [
        "## Baseline",
        "Measured in the same run, on the same pairs, so the ratios below compare like with like.",
        _table(
            ["Baseline", "Pairs", "Time(s)", "Batch Size", "Pairs/s", "Note"],
            [(f"`{b.name}`", b.pairs, f"{b.wall_s:.2f}", b.batch_size or "-", f"{b.pairs_per_s:.1f}", _cell(b.note))
             for b in r.baselines],
        ),
    ]
    if stats:
        headers = ["Config", "Agg TP (pairs/s)"] + [f"vs `{b.name}`" for b in r.baselines]
        rows = [
            [_config_name(s.config, vary), f"{s.aggregate_tp:.1f}"]
            + [_ratio(s.aggregate_tp, b.pairs_per_s) for b in r.baselines]
            for s in stats
        ]
        out.append(_table(headers, rows))
        best = max(stats, key=lambda s: s.aggregate_tp)
        ratios = ", ".join(f"{_ratio(best.aggregate_tp, b.pairs_per_s)} `{b.name}`" for b in r.baselines)
        out.append(
            f"**Best:** {_config_name(best.config, vary)} at {best.aggregate_tp:.1f} pairs/s "
            f"(aggregate) = {ratios}."
        )
    return "\n\n".join(out)


def _plots(plots: Sequence[str | Path]) -> str:
    if not plots:
        return ""
    lines = ["## Plots"] + [f"![{Path(p).stem}]({Path(p).as_posix()})" for p in plots]
    return "\n\n".join(lines)


def _summary_table(s: Summary) -> str:
    rows = [
        ("Average", s.avg), ("Min", s.min), ("Max", s.max), ("Std Dev", s.std),
        ("P50", s.p50), ("P90", s.p90), ("P95", s.p95), ("P99", s.p99),
    ]
    return _table(["Metric", "Value"], [(k, _f(v)) for k, v in rows])


def _bucket_label(b: analysis.LatencyBucket) -> str:
    if b.low_ms is None:
        return f"< {b.high_ms:.1f}ms ({b.label})"
    if b.high_ms is None:
        return f">= {b.low_ms:.1f}ms ({b.label})"
    return f"{b.low_ms:.1f}-{b.high_ms:.1f}ms ({b.label})"


def _clients(n: int) -> str:
    return "1 client" if n == 1 else f"all {n} clients together"


def _config_detail(i: int, s: ConfigStats, vary: tuple[bool, bool]) -> str:
    c = s.config
    out = [
        f"### Config {i}: {_config_name(c, vary, long=True)}",
        f"**Total:** {c.pairs} pairs in {c.wall_s:.2f}s",
        f"**Aggregate throughput:** {s.aggregate_tp:.2f} pairs/s "
        f"({_clients(c.concurrency)}: pairs / wall time)",
    ]
    if c.failed_requests:
        first = next(r.error for r in c.requests if not r.ok)
        out.append(
            f"**Failed requests:** {c.failed_requests} of {len(c.requests)}, left out of the "
            f"statistics below (first error: `{first}`)"
        )
    out += [
        "#### Latency (ms)\n" + _summary_table(s.latency_ms),
        "#### Throughput (pairs/s)\n"
        + _summary_table(s.request_tp)
        + "\n\n_Per request: the request's pairs / its latency. The aggregate is on its own line above._",
        "#### Latency vs Throughput Analysis",
    ]
    buckets = analysis.latency_buckets(c, s.latency_ms)
    if buckets:
        rows = [
            (_bucket_label(b), _f(b.request_tp.avg, na="-"), _f(b.request_tp.min, na="-"),
             _f(b.request_tp.max, na="-"), b.request_tp.count)
            for b in buckets
        ]
        out.append(
            _table(["Latency Range", "Avg Throughput", "Min Throughput", "Max Throughput", "Count"], rows)
            + "\n\n_Requests grouped by their latency's quantile; throughput is per request._"
        )
    else:
        out.append("_No successful requests._")
    if s.correlation is None:
        out.append("**Correlation:** n/a (fewer than 2 requests, or constant latency)")
    else:
        out.append(
            f"**Correlation:** {s.correlation:.3f} "
            "(negative correlation expected: lower latency = higher throughput)"
        )
    return "\n\n".join(out)


def _detailed(r: SweepResult, stats: list[ConfigStats]) -> str:
    vary = _varying(r)
    return "\n\n".join(["## Detailed Metrics"] + [_config_detail(i, s, vary) for i, s in enumerate(stats, 1)])


def _overall(r: SweepResult, stats: list[ConfigStats]) -> str:
    vary = _varying(r)
    with_latency = [s for s in stats if s.latency_ms.avg is not None]
    rows = []
    if stats:
        best_tp = max(stats, key=lambda s: s.aggregate_tp)
        rows.append(
            ("Best Throughput (aggregate)", f"{best_tp.aggregate_tp:.2f} p/s", _config_name(best_tp.config, vary))
        )
    if with_latency:
        best_lat = min(with_latency, key=lambda s: s.latency_ms.avg)
        rows.append(("Best Latency (avg)", f"{best_lat.latency_ms.avg:.2f}ms", _config_name(best_lat.config, vary)))
    if stats:
        mean_tp = sum(s.aggregate_tp for s in stats) / len(stats)
        rows.append(("Avg Throughput (aggregate)", f"{mean_tp:.2f} p/s", "all configs"))
    if with_latency:
        mean_lat = sum(s.latency_ms.avg for s in with_latency) / len(with_latency)
        rows.append(("Avg Latency", f"{mean_lat:.2f}ms", "all configs"))
    body = _table(["Metric", "Value", "Config"], rows) if rows else "_No configs._"
    return "## Overall Summary\n\n" + body + "\n\n_Averages are means of the per-config values._"


def _dashboard_row(title: str, s: Summary, absent: str) -> list[str]:
    if s.count == 0:
        return [title, absent, "-", "-", "-", "-"]
    return [title] + [_f(v, 1) for v in (s.avg, s.min, s.max, s.p50, s.p95)]


def _dashboard(r: SweepResult) -> str:
    present = set(analysis.present_series(r.configs))
    rows = []
    # The reference's rows first, in its order; the extra CPU rows only when probed.
    for name in ("gpu_mem_mb", "gpu_util_pct", "cpu_pct", "cpu_steal_pct", "broker_cpu_pct", "workers_cpu_pct"):
        series = analysis.SERIES[name]
        if name in ("cpu_steal_pct", "broker_cpu_pct", "workers_cpu_pct") and name not in present:
            continue
        summary = analysis.series_summary(r.configs, name)
        rows.append(_dashboard_row(f"{series.title} ({series.unit})", summary, NO_PROBE))
    for title, attr in (
        ("Tokenization (ms)", "tokenize_ms"),
        ("Inference (ms)", "inference_ms"),
        ("Queue Wait (ms)", "queue_wait_ms"),
        ("Padding Waste (%)", "padding_waste_pct"),
        ("Batch Size (pairs)", "size"),
    ):
        rows.append(_dashboard_row(title, analysis.batch_metric(r.configs, attr), NO_BATCHES))
    note = (
        "_Probe rows pool every time-series sample of every config; batch rows pool every batch. "
        f"\"{NO_PROBE}\" means nothing measured it on this machine, not zero._"
    )
    table = _table(["Metric", "Avg", "Min", "Max", "P50", "P95"], rows)
    return "\n\n".join(["## Dashboard Metrics Summary", table, note])


def _hops(r: SweepResult) -> str:
    """Medians of each hop per config; empty for results recorded before hop timings existed."""
    rows = []
    tail = f"slowest {analysis.TAIL_PCT:g} %"
    engines = _varying(r)[1]
    for c in r.configs:
        for label, h in (("all (p50)", analysis.hop_breakdown(c)),
                         (tail, analysis.hop_breakdown(c, analysis.TAIL_PCT))):
            if h is not None:
                rows.append((c.batch, c.concurrency, *([c.engine] if engines else []), label, _f(h.request_ms),
                             _f(h.client_broker_ms), _f(h.broker_worker_ms), _f(h.handoffs_ms), _f(h.tokenize_ms),
                             _f(h.device_ipc_ms), _f(h.model_ms)))
    if not rows:
        return ""
    table = _table(["Batch", "Conc", *(["Engine"] if engines else []), "Subset", "Request", "Client + broker",
                    "Broker <-> worker", "Worker hand-offs", "Tokenize", "Worker <-> device process", "Model"], rows)
    note = ("_Medians, ms. Request is the client's p50; the other columns are medians of each batch's parts "
            "(see Hops in the definitions), so they add up to the request only roughly, and at concurrency "
            f"above 1 the queueing lands in Client + broker. The {tail} row (configs of "
            f"{analysis.TAIL_MIN_BATCHES} batches or more) takes the same medians over the slowest "
            f"{analysis.TAIL_PCT:g} % of requests and of batches (by round trip): it shows which hops a tail comes "
            "from. When every hop slows at once, the host is the cause (CPU Steal shows it where the "
            "hypervisor reports it)._")
    return "\n\n".join(["### Where a Request's Time Goes", table, note])


def _stage_breakdown(r: SweepResult) -> str:
    b = analysis.stage_breakdown(r.configs)
    out = ["### Stage Breakdown"]
    if b is None:
        out.append(f"_{NO_BATCHES}._")
        return "\n\n".join(out)
    rows = [
        ("Tokenization", b.tokenize_ms),
        ("Queue Wait", b.queue_wait_ms),
        ("Model Inference", b.inference_ms),
        ("Other (broker+network)", b.other_ms),
    ]
    out.append(
        _table(
            ["Stage", "Percentage", "Per Pair (ms)"],
            [(name, _f(b.pct(ms), 1) + "%" if ms is not None else "n/a", _f(b.per_pair_ms(ms))) for name, ms in rows],
        )
    )
    out.append(
        "_Each batch's stage times are counted once per pair in the batch and summed; Other is the "
        "pairs' summed client-observed request latency minus those three (broker routing, "
        "serialisation, network, waiting for the request's other batches; n/a without requests). "
        "Percentages are of the four together. Queue wait is each batch's longest wait, so its share "
        "is an upper bound._"
    )
    return "\n\n".join(out)


def _per_worker(r: SweepResult) -> str:
    workers = analysis.worker_stats(r.configs)
    out = ["### Per-Worker Statistics"]
    if not workers:
        out.append(f"_{NO_BATCHES}._")
        return "\n\n".join(out)
    rows = [
        (w.worker, w.batches, w.pairs, _f(w.inference_ms.avg, 1), _f(w.inference_ms.p95, 1),
         f"{w.pairs_per_s:.1f}", f"{w.busy_pct:.1f}")
        for w in workers
    ]
    out.append(
        _table(
            ["Worker ID", "Batches", "Pairs", "Avg Inference (ms)", "P95 Inference (ms)",
             "Throughput (pairs/s)", "Busy (%)"],
            rows,
        )
    )
    out.append(
        "_Throughput is the worker's pairs / the summed wall time of all configs (its share of the "
        "aggregate). Busy is its summed tokenization + inference time / that wall time._"
    )
    return "\n\n".join(out)


DEFINITIONS: tuple[tuple[str, str], ...] = (
    ("Latency", "client-observed request time, from sending a request to receiving all its scores "
                "(`time.monotonic()` in the client); failed requests are left out."),
    ("Per-request throughput (Req TP)", "a request's pairs / its latency: the rate one client "
                                        "sees. Its percentiles are over requests."),
    ("Aggregate throughput (Agg TP)", "pairs scored by all concurrent clients together / the "
                                      "config's wall time. This is the pool's capacity at that load; "
                                      "the reference reports' \"TP Avg\" is this number."),
    ("Pairs", "(query, passage) pairs scored; Batch is the pairs per client request, Conc the "
              "number of clients sending at once."),
    ("Tokenization", "per batch, time the worker spent tokenizing and padding the pairs."),
    ("Inference", "per batch, time of the model's forward pass, results on the host."),
    ("Queue wait", "per batch, the longest wait among its pairs from enqueue at the broker to "
                   "dispatch to a worker."),
    ("Padding waste", "per batch, (padded tokens - real tokens) / padded tokens: the share of the "
                      "compute spent on padding."),
    ("GPU / CPU rows", "probe samples taken while the config ran. CPU Usage is machine-wide, % of "
                       "all cores; broker and worker CPU are % of one core. GPU memory is summed over "
                       "GPUs and utilisation averaged; Metal memory is system-wide."),
    ("Stage breakdown", "pair-weighted share of client time in tokenization, queue wait, inference "
                        "and everything else (Other)."),
    ("Hops", "Client + broker: the request's p50 minus its batches' p50 round trip from the broker to a "
             "worker and back (the client, the broker's own work, the wire between them, and the wait for a "
             "split request's slower batch). Broker <-> worker: that round trip minus the worker's time from "
             "the batch's arrival to its result. Worker hand-offs: the worker's time outside tokenizing and "
             "inference (its threads passing the batch on; none where a `--device-process` worker does all on "
             "one thread). Worker <-> device process: inference minus the chunks' time in the device process "
             "(the ipc hop both ways, any wait in its socket while it was busy, and a reply's wait while the "
             "worker tokenizes its next batch). Model: the device process's time from taking the chunks off "
             "its socket to its reply (a pass ahead of them, the forward pass, the copy back), or the inference "
             "where the worker runs the model."),
    ("Worker throughput / busy", "a worker's pairs / summed wall time; busy = its tokenization + "
                                 "inference time / summed wall time."),
    ("Correlation", "Pearson r between per-request latency and per-request throughput."),
    ("P50/P90/P95/P99", "percentiles with linear interpolation (numpy's default); Std Dev is the "
                        "sample standard deviation."),
)


def _definitions() -> str:
    return "## Metric definitions\n\n" + "\n".join(f"- **{name}:** {text}" for name, text in DEFINITIONS)


# --- the time-series companion ------------------------------------------------------------

def _downsample(n: int, limit: int = MAX_TIMESERIES_ROWS) -> list[int]:
    """Evenly spaced indices, first and last included."""
    if n <= limit:
        return list(range(n))
    return sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})


def _timeseries_table(c: ConfigResult) -> str:
    if not c.samples:
        return "_No samples recorded._"
    present = analysis.present_series([c])
    columns = [n for n in ("cpu_pct", "cpu_steal_pct", "gpu_util_pct", "gpu_mem_mb", "queue_pairs",
                           "batches_in_flight", "pairs_per_s") if n in present]
    values = {n: analysis.series_values(c.samples, n) for n in columns}
    times = analysis.elapsed(c.samples)
    idx = _downsample(len(c.samples))
    headers = ["Elapsed (s)"] + [f"{analysis.SERIES[n].title} ({analysis.SERIES[n].unit})" for n in columns]
    rows = [[_f(times[i], 1)] + [_f(values[n][i], 1, na="-") for n in columns] for i in idx]
    span = max((t for t in times if t is not None), default=0.0)
    note = f"_{len(c.samples)} samples over {span:.1f}s"
    note += f"; showing {len(idx)} evenly spaced rows._" if len(idx) < len(c.samples) else "._"
    return note + "\n\n" + _table(headers, rows)


def _columns_table(result: SweepResult) -> str:
    """The documented columns (``rerankpool.stats.timeseries.COLUMNS``) of the samples and batch events."""
    keys = {k for c in result.configs for s in c.samples for k in s}
    if any(c.batch_events for c in result.configs):
        keys.update(BATCH_EVENT_FIELDS)
    if not keys:
        return "_No samples recorded._"
    pattern_of = {doc: pattern for pattern, doc in COLUMNS.items()}
    documented = {pattern_of[doc] for doc in map(column_doc, keys) if doc is not None}
    rows = [(f"`{p}`", doc.unit or "-", doc.description) for p, doc in COLUMNS.items() if p in documented]
    rows += [(f"`{k}`", "?", "(undocumented)") for k in sorted(keys) if column_doc(k) is None]
    return (
        _table(["Column", "Unit", "Meaning"], rows)
        + "\n\n_MB means MiB. `<i>` is the GPU index, `<role>` a process (`broker`, `worker-0`, ...). "
        "A column missing from a row means the reading could not be taken, not zero._"
    )


def render_timeseries_report(result: SweepResult, files: dict[str, str]) -> str:
    """``NAME_timeseries.md``: the raw files, their columns, and each config's series at a glance.

    ``files`` maps each raw file's path (as the reader should find it, relative
    to the report) to a line saying what it holds.
    """
    out = [f"# {result.name}: time series", f"_Companion of `{result.name}.md`._"]
    out.append("## Raw files")
    if files:
        out.append(_table(["File", "Contents"], [(f"`{path}`", _cell(what)) for path, what in files.items()]))
    else:
        out.append("_None listed._")
    out.append("## Columns")
    out.append(_columns_table(result))
    vary = _varying(result)
    for i, c in enumerate(result.configs, 1):
        out.append(f"## Config {i}: {_config_name(c, vary, long=True)}")
        out.append(_timeseries_table(c))
    return "\n\n".join(out) + "\n"
