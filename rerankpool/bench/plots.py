"""PNG plots of a sweep, for the report and for sizing at a glance.

matplotlib is an optional dependency (the ``bench`` extra), so it is imported
only when a plot is drawn. Figures are drawn with the object API on the Agg
canvas: no pyplot global state, nothing to close, safe in a CLI or a thread.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

from rerankpool.bench import analysis
from rerankpool.bench.analysis import ConfigStats
from rerankpool.bench.results import SweepResult

log = logging.getLogger(__name__)

__all__ = [
    "plot_throughput_latency",
    "plot_timeseries",
]

_DPI = 110


def _figure(rows: int = 1, height: float = 4.0) -> tuple[Any, list[Any]]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("plots need matplotlib: pip install 'rerankpool[bench]'") from exc
    fig = Figure(figsize=(8.0, height * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    return fig, list(axes)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI)
    log.info("wrote %s", path)
    return path


def _groups(result: SweepResult) -> dict[str, list[ConfigStats]]:
    """Configs as lines: one per concurrency (and workers/engine when those vary), sorted by batch."""
    vary_workers = len({c.workers for c in result.configs}) > 1
    vary_engine = len({c.engine for c in result.configs}) > 1
    groups: dict[str, list[ConfigStats]] = defaultdict(list)
    for c in result.configs:
        label = f"conc={c.concurrency}"
        if vary_workers:
            label += f", workers={c.workers}"
        if vary_engine:
            label += f", {c.engine}"
        groups[label].append(analysis.config_stats(c))
    return {k: sorted(v, key=lambda s: s.config.batch) for k, v in groups.items()}


def _batch_axis(ax: Any, result: SweepResult) -> None:
    batches = sorted({c.batch for c in result.configs})
    if batches and batches[0] > 0 and batches[-1] / batches[0] >= 4:
        ax.set_xscale("log", base=2)
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.set_xlabel("client batch (pairs per request)")
    ax.grid(True, alpha=0.3)


def _line_plot(
    result: SweepResult,
    path: Path,
    title: str,
    ylabel: str,
    lines: list[tuple[str, str, Callable[[ConfigStats], float | None]]],
) -> tuple[Any, Any, Path]:
    """One line per config group and per (suffix, style, value) in ``lines``; the caller saves."""
    fig, (ax,) = _figure()
    for i, (group, stats) in enumerate(_groups(result).items()):
        color = f"C{i}"
        for suffix, style, value in lines:
            points = [(s.config.batch, value(s)) for s in stats]
            points = [(x, y) for x, y in points if y is not None]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, style, color=color, marker="o", label=f"{group}{suffix}")
    _batch_axis(ax, result)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    return fig, ax, path


def plot_throughput_latency(result: SweepResult, out_dir: str | Path) -> list[Path]:
    """``NAME_throughput.png`` (aggregate), ``NAME_latency.png`` (P50/P99), ``NAME_request_throughput.png``."""
    out_dir = Path(out_dir)
    if not result.configs:
        log.info("no configs to plot")
        return []
    written = []

    fig, ax, path = _line_plot(
        result, out_dir / f"{result.name}_throughput.png",
        "Aggregate throughput (all clients, pairs / wall time)", "pairs/s",
        [("", "-", lambda s: s.aggregate_tp)],
    )
    for j, b in enumerate(result.baselines):
        ax.axhline(b.pairs_per_s, linestyle=":", color=f"C{7 + j % 3}", label=f"baseline: {b.name}")
    ax.legend()
    written.append(_save(fig, path))

    fig, ax, path = _line_plot(
        result, out_dir / f"{result.name}_latency.png",
        "Client-observed request latency", "ms",
        [(" P50", "-", lambda s: s.latency_ms.p50), (" P99", "--", lambda s: s.latency_ms.p99)],
    )
    ax.legend()
    written.append(_save(fig, path))

    fig, ax, path = _line_plot(
        result, out_dir / f"{result.name}_request_throughput.png",
        "Per-request throughput (a request's pairs / its latency)", "pairs/s",
        [(" P50", "-", lambda s: s.request_tp.p50), (" P95", "--", lambda s: s.request_tp.p95)],
    )
    ax.legend()
    written.append(_save(fig, path))
    return written


#: Panels of the time-series figure: (y label, derived series drawn on it).
_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("CPU (%)", ("cpu_pct", "cpu_steal_pct", "broker_cpu_pct", "workers_cpu_pct")),
    ("GPU util (%)", ("gpu_util_pct",)),
    ("GPU memory (MB)", ("gpu_mem_mb",)),
    ("queue (pairs)", ("queue_pairs",)),
    ("batches in flight", ("batches_in_flight",)),
    ("pool pairs/s", ("pairs_per_s",)),
)
_GAP_S = 1.0


def plot_timeseries(result: SweepResult, out_dir: str | Path) -> list[Path]:
    """``NAME_timeseries.png``: one panel per probed metric, the configs laid end to end in time.

    Panels whose metric no probe measured are left out; returns [] when
    there are no samples at all.
    """
    present = set(analysis.present_series(result.configs))
    panels = [(label, [n for n in names if n in present]) for label, names in _PANELS]
    panels = [(label, names) for label, names in panels if names]
    if not panels:
        log.info("no time-series samples to plot")
        return []
    fig, axes = _figure(rows=len(panels), height=1.9)
    offset = 0.0
    labelled: set[str] = set()
    for c in result.configs:
        times = analysis.elapsed(c.samples)
        for ax, (_, names) in zip(axes, panels):
            for j, name in enumerate(names):
                points = [(offset + t, v) for t, v in zip(times, analysis.series_values(c.samples, name))
                          if t is not None and v is not None]
                if points:
                    xs, ys = zip(*points)
                    label = None if name in labelled else analysis.SERIES[name].title
                    labelled.add(name)
                    ax.plot(xs, ys, color=f"C{j}", linewidth=1.0, label=label)
            ax.axvline(offset, color="0.6", linewidth=0.8, linestyle=":")
        axes[0].annotate(f"b{c.batch} c{c.concurrency}", (offset, 1.0), xycoords=("data", "axes fraction"),
                         fontsize=7, va="bottom", rotation=30)
        span = max([t for t in times if t is not None] + [c.wall_s])
        offset += span + _GAP_S
    for ax, (label, names) in zip(axes, panels):
        ax.set_ylabel(label, fontsize=8)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        if len(names) > 1:
            ax.legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("seconds (configs end to end; dotted lines mark each config's start)")
    fig.suptitle(f"{result.title or result.name}: time series", fontsize=10)
    return [_save(fig, Path(out_dir) / f"{result.name}_timeseries.png")]
