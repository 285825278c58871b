"""Apple GPU utilisation and memory from ``ioreg`` (macOS, no sudo needed).

The accelerator node's ``PerformanceStatistics`` dictionary carries the
numbers; tests/fixtures/ioreg_*.txt hold real captures. Columns:
    metal.util_pct        "Device Utilization %": the GPU's busy share, %. (Renderer
                          and Tiler utilisation stay near 0 under compute work.)
    metal.mem_in_use_mb   "In use system memory": unified memory the GPU uses now,
                          system-wide, MB (MiB)
    metal.mem_alloc_mb    "Alloc system memory": unified memory the GPU has
                          allocated, system-wide, MB (MiB)
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys

from rerankpool.stats.probe import Readings, bytes_to_mb

log = logging.getLogger(__name__)

IOREG_COMMAND: tuple[str, ...] = ("ioreg", "-r", "-d", "1", "-w", "0", "-c", "IOAccelerator")

# The dict is on one line and holds only "key"=number pairs; [^{}] keeps the
# match inside one dict even if a capture lists several accelerators.
_STATS_BLOCK = re.compile(r'"PerformanceStatistics"\s*=\s*\{([^{}]*)\}')
# "key"=123 or "key" = 123 ; the key is matched whole, so "In use system
# memory (driver)" never stands in for "In use system memory".
_NUMERIC_ENTRY = re.compile(r'"([^"]+)"\s*=\s*(-?\d+(?:\.\d+)?)')

# ioreg key -> (column, converter)
_KEYS: dict[str, tuple[str, str]] = {
    "Device Utilization %": ("metal.util_pct", "pct"),
    "In use system memory": ("metal.mem_in_use_mb", "bytes"),
    "Alloc system memory": ("metal.mem_alloc_mb", "bytes"),
}


def parse_ioreg_raw(text: str) -> dict[str, float]:
    """All numeric entries of the first ``PerformanceStatistics`` dict in ``text``.

    Returns ``{}`` when there is none; never raises on odd input.
    """
    block = _STATS_BLOCK.search(text)
    if block is None:
        return {}
    return {key: float(value) for key, value in _NUMERIC_ENTRY.findall(block.group(1))}


def parse_ioreg_performance_statistics(text: str) -> Readings:
    """The ``metal.*`` columns from ``ioreg -r -d 1 -w 0 -c IOAccelerator`` output.

    Keys absent from the capture are absent from the result (never zero);
    garbage input gives ``{}``.
    """
    raw = parse_ioreg_raw(text)
    row: Readings = {}
    for key, (column, kind) in _KEYS.items():
        if key in raw:
            row[column] = bytes_to_mb(raw[key]) if kind == "bytes" else raw[key]
    return row


def _is_macos_with_ioreg() -> bool:
    return sys.platform == "darwin" and shutil.which(IOREG_COMMAND[0]) is not None


def _run_ioreg(timeout_s: float) -> str:
    return subprocess.run(
        IOREG_COMMAND, capture_output=True, text=True, timeout=timeout_s, check=True
    ).stdout


class MetalProbe:
    """Apple GPU busy share and memory, by running ``ioreg`` once per read.

    Available only on macOS with ``ioreg`` on PATH. One ``ioreg`` call takes
    tens of milliseconds, fine at the sampler's default 0.25 s interval.
    The figures are system-wide: other apps using the GPU count too.
    """

    name = "metal"

    def __init__(self, timeout_s: float = 2.0) -> None:
        self.timeout_s = timeout_s
        self._available = _is_macos_with_ioreg()
        self._warned = False

    def available(self) -> bool:
        """True on macOS with ``ioreg`` on PATH."""
        return self._available

    def read(self) -> Readings:
        """One row of readings; see the module docstring for column names."""
        if not self._available:
            return {}
        try:
            text = _run_ioreg(self.timeout_s)
        except (OSError, subprocess.SubprocessError) as exc:
            self._warn_once("ioreg failed (%s); metal columns absent", exc)
            return {}
        row = parse_ioreg_performance_statistics(text)
        if not row:
            self._warn_once("ioreg output had no PerformanceStatistics; metal columns absent")
        return row

    def _warn_once(self, msg: str, *args: object) -> None:
        if not self._warned:
            log.warning("Metal probe: " + msg, *args)
            self._warned = True
