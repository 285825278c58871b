"""Measurements for benchmarking the pool: probes, a sampler, time-series files, summaries.

Probes read the machine (``ProcessProbe``, ``NvmlProbe``, ``MetalProbe``);
``Sampler`` records them with the pool's own counters as JSON Lines;
``timeseries`` reads/writes/documents those files; ``summary`` boils a
column down to the numbers a report quotes. The framework allocators' figures
(which no outside probe can see) come from each worker's engine (``Engine.memory``).
"""

from rerankpool.stats.metal import MetalProbe, parse_ioreg_performance_statistics
from rerankpool.stats.nvml import NvmlProbe, nvml_smoke
from rerankpool.stats.probe import BYTES_PER_MB, Probe
from rerankpool.stats.sampler import Sampler
from rerankpool.stats.summary import Summary, correlation, describe
from rerankpool.stats.system import ProcessProbe
from rerankpool.stats.timeseries import (
    BATCH_EVENT_FIELDS,
    COLUMNS,
    ColumnDoc,
    column_doc,
    describe_columns,
    read_csv,
    read_jsonl,
    to_csv,
    write_jsonl,
)

__all__ = [
    "BATCH_EVENT_FIELDS",
    "BYTES_PER_MB",
    "COLUMNS",
    "ColumnDoc",
    "MetalProbe",
    "NvmlProbe",
    "Probe",
    "ProcessProbe",
    "Sampler",
    "Summary",
    "column_doc",
    "correlation",
    "describe",
    "describe_columns",
    "nvml_smoke",
    "parse_ioreg_performance_statistics",
    "read_csv",
    "read_jsonl",
    "to_csv",
    "write_jsonl",
]
