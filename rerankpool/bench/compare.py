"""Side-by-side comparison of our sweep with a report in the reference layout.

``parse_reference_report`` reads the header and the Results Summary table of
a markdown report: the project's reference reports (``09_*.md``, ``14_*.md``)
and our own ``render_report`` output. It goes by column names, so either
throughput layout parses:

- reference: ``TP Avg`` (which is in fact the aggregate, pairs / time) and
  ``TP P95`` (a per-request percentile) side by side under one "TP" label;
- ours: ``Agg TP (pairs/s)``, ``Req TP P50``, ``Req TP P95``.

Both map to the same row keys: ``tp_avg`` is the aggregate, ``tp_p50`` and
``tp_p95`` are per-request percentiles.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from rerankpool.bench import analysis
from rerankpool.bench.results import SweepResult

log = logging.getLogger(__name__)

__all__ = [
    "parse_reference_report",
    "render_comparison",
]

#: Results Summary column -> (row key, parser).
_COLUMNS: dict[str, tuple[str, Any]] = {
    "batch": ("batch", int),
    "conc": ("conc", int),
    "workers": ("workers", int),
    "engine": ("engine", str),
    "pairs": ("pairs", int),
    "time(s)": ("time_s", float),
    "lat avg": ("lat_avg_ms", float),
    "lat p95": ("lat_p95_ms", float),
    "lat p99": ("lat_p99_ms", float),
    "tp avg": ("tp_avg", float),
    "tp p95": ("tp_p95", float),
    "agg tp (pairs/s)": ("tp_avg", float),
    "req tp p50": ("tp_p50", float),
    "req tp p95": ("tp_p95", float),
    "failed": ("failed", int),
}

_HEADER_FIELDS = {
    "timestamp": re.compile(r"^\*\*Timestamp:\*\*\s*(.+?)\s*$", re.M),
    "model": re.compile(r"^\*\*Model:\*\*\s*`?([^`\n]+?)`?\s*$", re.M),
    "backend": re.compile(r"\*\*Backend:\*\*\s*`?([^`|\n]+?)`?\s*(?:\||$)", re.M),
    "device": re.compile(r"\*\*Device:\*\*\s*`?([^`|\n]+?)`?\s*$", re.M),
    "dynamic_batching": re.compile(r"^\*\*Dynamic Batching:\*\*\s*(.+?)\s*$", re.M),
}


def _parse_value(text: str, kind: Any) -> Any:
    text = text.strip()
    if kind is str:
        return text
    number = text.removesuffix("ms").replace(",", "").strip()
    try:
        return kind(float(number)) if kind is int else float(number)
    except ValueError:
        return None  # "n/a", "-": not measured


def _section(text: str, heading: str) -> str:
    """Body of a ``## heading`` section, up to the next level-2 heading."""
    match = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    return match.group(1) if match else ""


def _first_table(body: str) -> list[list[str]]:
    rows = []
    for line in body.splitlines():
        line = line.strip()
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
        elif rows:
            break
    return rows


def parse_reference_report(text: str) -> dict[str, Any]:
    """Header fields and the Results Summary rows of a report in the reference layout.

    Returns ``{"name", "timestamp", "model", "backend", "device",
    "dynamic_batching", "throughput_layout", "configs"}``. ``throughput_layout``
    is ``"mixed"`` for the reference's TP Avg/TP P95 columns and
    ``"separated"`` for ours. Each config row has ``batch, conc, pairs,
    time_s, lat_avg_ms, lat_p95_ms, lat_p99_ms, tp_avg, tp_p95`` (plus
    ``tp_p50``, ``workers``, ``engine``, ``failed`` when the report has them);
    a value shown as n/a parses as None.
    """
    name = re.search(r"^# (.+?)\s*$", text, re.M)
    out: dict[str, Any] = {"name": name.group(1) if name else None}
    for key, pattern in _HEADER_FIELDS.items():
        match = pattern.search(text)
        out[key] = match.group(1) if match else None
    table = _first_table(_section(text, "Results Summary"))
    if not table:
        raise ValueError("no Results Summary table found")
    headers = [h.lower() for h in table[0]]
    unknown = [h for h in headers if h not in _COLUMNS]
    if unknown:
        log.debug("ignoring unknown Results Summary columns: %s", unknown)
    out["throughput_layout"] = "mixed" if "tp avg" in headers else "separated"
    out["configs"] = [
        {_COLUMNS[h][0]: _parse_value(cell, _COLUMNS[h][1]) for h, cell in zip(headers, row) if h in _COLUMNS}
        for row in table[1:]
    ]
    return out


def _as_parsed(ours: SweepResult | dict[str, Any]) -> dict[str, Any]:
    if isinstance(ours, dict):
        return ours
    return {
        "name": ours.name,
        "timestamp": ours.timestamp,
        "model": ours.model,
        "backend": ours.engine,
        "device": ours.device,
        "throughput_layout": "separated",
        "configs": [analysis.config_stats(c).summary_row() for c in ours.configs],
    }


def _delta(ours: float | None, ref: float | None) -> str:
    if ours is None or ref is None or ref == 0:
        return "n/a"
    return f"{100.0 * (ours - ref) / ref:+.1f}%"


def _cell(ours: float | None, ref: float | None, digits: int = 1) -> str:
    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.{digits}f}"

    return f"{fmt(ours)} / {fmt(ref)} ({_delta(ours, ref)})"


def _mixing_note(reference: dict[str, Any]) -> str:
    """Explain the reference's TP Avg / TP P95 columns, with evidence from its own rows."""
    rows = [r for r in reference["configs"] if r.get("tp_avg") and r.get("pairs") and r.get("time_s")]
    agree = sum(1 for r in rows if abs(r["pairs"] / r["time_s"] - r["tp_avg"]) <= 0.01 * r["tp_avg"])
    note = (
        "**Note on the reference's throughput columns:** its \"TP Avg\" is the aggregate (it equals "
        f"Pairs / Time(s) within 1% in {agree} of its {len(rows)} rows), while its \"TP P95\" is a "
        "per-request percentile. They share a label but not a meaning"
    )
    odd = next((r for r in reference["configs"] if (r.get("tp_p95") or 0) < (r.get("tp_avg") or 0)), None)
    if odd is not None:
        note += (
            f": at batch={odd['batch']}, conc={odd['conc']} TP Avg is {odd['tp_avg']:.1f} but TP P95 "
            f"only {odd['tp_p95']:.1f}, an average above the 95th percentile: two different quantities"
        )
    return note + ". Here TP Avg is compared with our Agg TP and TP P95 with our Req TP P95."


_METRICS = (
    ("Lat Avg (ms)", "lat_avg_ms"),
    ("Lat P95 (ms)", "lat_p95_ms"),
    ("Lat P99 (ms)", "lat_p99_ms"),
    ("Agg TP (pairs/s)", "tp_avg"),
    ("Req TP P95 (pairs/s)", "tp_p95"),
)


def render_comparison(ours: SweepResult | dict[str, Any], reference: dict[str, Any]) -> str:
    """Markdown: our Results Summary next to the reference's, matched by (batch, concurrency).

    ``ours`` is a ``SweepResult`` or a report parsed by ``parse_reference_report``;
    ``reference`` is a parsed report. Each cell reads "ours / reference (delta)",
    delta = (ours - reference) / reference. Where several of our configs share a
    (batch, conc), e.g. a sweep over workers, each is compared with the same row.
    """
    mine = _as_parsed(ours)
    ref_rows = {(r.get("batch"), r.get("conc")): r for r in reference["configs"]}
    our_keys = {(r.get("batch"), r.get("conc")) for r in mine["configs"]}
    out = [f"## Comparison with {reference.get('name') or 'reference'}"]
    out.append(
        "| | Ours | Reference |\n|---|---|---|\n"
        + "\n".join(
            f"| {label} | {mine.get(key) or 'n/a'} | {reference.get(key) or 'n/a'} |"
            for label, key in (("Report", "name"), ("Model", "model"), ("Backend", "backend"),
                               ("Device", "device"), ("Timestamp", "timestamp"))
        )
    )
    rows = []
    for r in mine["configs"]:
        ref = ref_rows.get((r.get("batch"), r.get("conc")))
        if ref is None:
            continue
        name = f"batch={r['batch']}, conc={r['conc']}"
        if r.get("workers") is not None:
            name += f", workers={r['workers']}"
        rows.append(
            f"| {name} | {r.get('pairs')} / {ref.get('pairs')} | "
            + " | ".join(_cell(r.get(key), ref.get(key)) for _, key in _METRICS)
            + " |"
        )
    headers = ["Config", "Pairs"] + [label for label, _ in _METRICS]
    if rows:
        out.append(
            "| " + " | ".join(headers) + " |\n|" + "|".join("-" * (len(h) + 2) for h in headers) + "|\n"
            + "\n".join(rows)
        )
        out.append(
            "_Each cell: ours / reference (delta, (ours - reference) / reference). Lower latency is "
            "better, higher throughput is better. Different hardware, model or data make deltas "
            "descriptive, not a verdict._"
        )
    else:
        out.append("_No configs in common (matched by batch and concurrency)._")
    only_ours = sorted(our_keys - set(ref_rows), key=str)
    only_ref = sorted(set(ref_rows) - our_keys, key=str)
    if only_ours:
        out.append("**Only in ours:** " + "; ".join(f"batch={b}, conc={c}" for b, c in only_ours))
    if only_ref:
        out.append("**Only in the reference:** " + "; ".join(f"batch={b}, conc={c}" for b, c in only_ref))
    if reference.get("throughput_layout") == "mixed":
        out.append(_mixing_note(reference))
    return "\n\n".join(out) + "\n"
