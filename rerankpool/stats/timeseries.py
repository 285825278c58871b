"""Time-series files (JSON Lines and CSV) and the documentation of their columns.

Rows are flat dicts: column name -> number (or a short string such as
``batch.worker``). JSON Lines is the primary format because a row is
complete the moment its line is written, so a crashed run still leaves
usable data; CSV is for spreadsheets and plotting tools.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

log = logging.getLogger(__name__)

LEADING_COLUMNS: tuple[str, ...] = ("t", "elapsed_s")


# --------------------------------------------------------------------------- JSON Lines


def _json_default(value: Any) -> Any:
    """numpy scalars and the like: anything with ``.item()`` becomes a Python scalar."""
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    return str(value)


def _finite(value: Any) -> Any:
    # NaN/inf are not JSON; a missing reading is null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def row_to_json(row: Mapping[str, Any]) -> str:
    """One row as one line of strict JSON (no trailing newline)."""
    clean = {key: _finite(value) for key, value in row.items()}
    return json.dumps(clean, default=_json_default, allow_nan=False, separators=(",", ":"))


def write_jsonl(rows: Iterable[Mapping[str, Any]], path: Path) -> None:
    """Write ``rows`` to ``path`` (replacing it), one JSON object per line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(row_to_json(row) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON Lines file (gzip-compressed if its name ends in ``.gz``).

    Blank lines are skipped; a malformed line (typically the last one, cut
    short by a crash) is logged and skipped rather than losing the file.
    """
    rows: list[dict[str, Any]] = []
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                log.warning("%s:%d: skipping malformed line (%s)", path, lineno, exc)
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                log.warning("%s:%d: skipping non-object line", path, lineno)
    return rows


# --------------------------------------------------------------------------- CSV


def _natural_key(name: str) -> list[Any]:
    # "gpu.10.util_pct" sorts after "gpu.2.util_pct"
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def csv_columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Union of the rows' columns: ``t``, ``elapsed_s`` first (if present), the rest sorted."""
    seen: set[str] = set()
    for row in rows:
        seen.update(row)
    leading = [c for c in LEADING_COLUMNS if c in seen]
    return leading + sorted(seen.difference(LEADING_COLUMNS), key=_natural_key)


def to_csv(rows: Iterable[Mapping[str, Any]], path: Path) -> None:
    """Write ``rows`` as CSV with the union of their columns; missing cells are empty."""
    rows = list(rows)
    columns = csv_columns(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if _finite(value) is None else value for key, value in row.items()})


_INT_CELL = re.compile(r"-?\d+")


def _parse_cell(cell: str) -> Any:
    if _INT_CELL.fullmatch(cell):
        return int(cell)
    try:
        return float(cell)
    except ValueError:
        return cell


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV written by ``to_csv``: numeric cells become int/float, empty cells are absent.

    A string cell that looks like a number (a worker named "0") comes back as
    a number; JSON Lines keeps types exactly.
    """
    with Path(path).open(encoding="utf-8", newline="") as fh:
        return [{key: _parse_cell(cell) for key, cell in row.items() if cell != ""} for row in csv.DictReader(fh)]


# --------------------------------------------------------------------------- column documentation


@dataclass(frozen=True)
class ColumnDoc:
    """What a column means and its unit ("" for text)."""

    description: str
    unit: str
    source: str


def _allocator_columns() -> dict[str, ColumnDoc]:
    keys = {
        "torch_cuda_allocated_mb": "memory held by live torch tensors on the worker's CUDA device",
        "torch_cuda_reserved_mb": "memory torch's CUDA caching allocator holds from the driver",
        "torch_cuda_peak_allocated_mb": "high-water mark of torch_cuda_allocated_mb",
        "torch_mps_allocated_mb": "memory held by live torch tensors on MPS",
        "torch_mps_driver_mb": "memory the Metal driver allocated for the worker (includes MPS cache)",
        "mlx_active_mb": "memory in live MLX arrays",
        "mlx_peak_mb": "high-water mark of mlx_active_mb",
        "mlx_cache_mb": "freed buffers MLX keeps for reuse",
    }
    return {
        f"worker.<role>.{key}": ColumnDoc(f"{text} (reported by the worker's engine with each result)", "MB",
                                          "pool_stats")
        for key, text in keys.items()
    }


COLUMNS: dict[str, ColumnDoc] = {
    # written by the Sampler itself
    "t": ColumnDoc("wall-clock time of the sample / event (unix epoch)", "s", "sampler"),
    "elapsed_s": ColumnDoc("time since the sampler started (monotonic clock)", "s", "sampler"),
    # ProcessProbe
    "proc.<role>.cpu_pct": ColumnDoc(
        "CPU used by one pool process since the previous sample, % of one core (can exceed 100)", "%", "ProcessProbe"),
    "proc.<role>.rss_mb": ColumnDoc("resident memory of one pool process", "MB", "ProcessProbe"),
    "system.cpu_pct": ColumnDoc("machine-wide CPU since the previous sample, % of all cores", "%", "ProcessProbe"),
    "system.cpu_steal_pct": ColumnDoc(
        "CPU time the hypervisor gave other guests while this machine wanted it, % of all cores (Linux VMs)", "%",
        "ProcessProbe"),
    "system.mem_used_mb": ColumnDoc("machine memory in use (total - available)", "MB", "ProcessProbe"),
    "system.mem_total_mb": ColumnDoc("machine memory in all", "MB", "ProcessProbe"),
    # NvmlProbe
    "gpu.<i>.util_pct": ColumnDoc(
        "share of the driver's last sample period with a kernel running on NVIDIA GPU <i>", "%", "NvmlProbe"),
    "gpu.<i>.mem_used_mb": ColumnDoc("device memory in use on GPU <i>, all processes", "MB", "NvmlProbe"),
    "gpu.<i>.mem_total_mb": ColumnDoc("device memory size of GPU <i>", "MB", "NvmlProbe"),
    # MetalProbe
    "metal.util_pct": ColumnDoc("Apple GPU busy share (ioreg 'Device Utilization %')", "%", "MetalProbe"),
    "metal.mem_in_use_mb": ColumnDoc(
        "unified memory the Apple GPU uses now, system-wide (ioreg 'In use system memory')", "MB", "MetalProbe"),
    "metal.mem_alloc_mb": ColumnDoc(
        "unified memory the Apple GPU has allocated, system-wide (ioreg 'Alloc system memory')", "MB", "MetalProbe"),
    # pool_stats callable (names chosen by the pool; these are the expected ones)
    "pool.queue_pairs": ColumnDoc("query-document pairs waiting in the broker's queue", "pairs", "pool_stats"),
    "pool.batches_in_flight": ColumnDoc("batches dispatched to workers and not yet answered", "batches", "pool_stats"),
    "pool.pairs_per_s": ColumnDoc("pairs scored per second over the last sample interval", "pairs/s", "pool_stats"),
    **_allocator_columns(),
    # per-batch events (rerankpool.protocol.BatchEvent, from the broker's stats), one per batch
    "batch.size": ColumnDoc("pairs in the batch", "pairs", "BatchEvent"),
    "batch.tokenize_ms": ColumnDoc("time to tokenize and pad the batch", "ms", "BatchEvent"),
    "batch.inference_ms": ColumnDoc("time of the model forward pass, results on host", "ms", "BatchEvent"),
    "batch.queue_wait_ms": ColumnDoc(
        "mean wait of the batch's pairs, from enqueue at the broker to dispatch", "ms", "BatchEvent"),
    "batch.real_tokens": ColumnDoc("sum of the pairs' token counts", "tokens", "BatchEvent"),
    "batch.padded_tokens": ColumnDoc(
        "size x padded sequence length: tokens the model computed", "tokens", "BatchEvent"
    ),
    "batch.padding_waste_pct": ColumnDoc(
        "share of computed tokens that were padding: 100 * (padded - real) / padded", "%", "BatchEvent"),
    "batch.worker": ColumnDoc("role name of the worker that ran the batch", "", "BatchEvent"),
}


BATCH_EVENT_FIELDS: tuple[str, ...] = tuple(name for name in COLUMNS if name.startswith("batch."))


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"<[^>]+>", pattern)
    return re.compile("(.+)".join(re.escape(part) for part in parts))


_COLUMN_REGEXES: list[tuple[re.Pattern[str], str]] = [(_pattern_regex(p), p) for p in COLUMNS]


def column_doc(name: str) -> ColumnDoc | None:
    """Documentation for a concrete column name (``proc.worker-0.rss_mb``), or None if unknown."""
    if name in COLUMNS:
        return COLUMNS[name]
    for regex, pattern in _COLUMN_REGEXES:
        if regex.fullmatch(name):
            return COLUMNS[pattern]
    return None


def describe_columns() -> str:
    """Markdown table of every documented column, to ship next to the data files."""
    lines = ["| column | unit | source | description |", "|---|---|---|---|"]
    for pattern, doc in COLUMNS.items():
        lines.append(f"| `{pattern}` | {doc.unit or '-'} | {doc.source} | {doc.description} |")
    lines += ["", "MB means MiB (2**20 bytes). `<role>` is a process role such as `broker` or "
              "`worker-0`; `<i>` is an NVML GPU index. A column missing from a row means "
              "no reading (probe absent, process gone), never zero."]
    return "\n".join(lines) + "\n"
