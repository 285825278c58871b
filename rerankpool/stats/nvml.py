"""NVIDIA GPU utilisation and memory through NVML (package ``nvidia-ml-py``, module ``pynvml``).

Columns, per GPU index ``<i>`` (NVML's index, which follows PCI bus order and
may differ from CUDA's default ordering unless CUDA_DEVICE_ORDER=PCI_BUS_ID):
    gpu.<i>.util_pct      share of the last sample period (1/6 s to 1 s, set by the
                          driver) in which a kernel was running, %
    gpu.<i>.mem_used_mb   device memory in use by all processes, MB (MiB)
    gpu.<i>.mem_total_mb  device memory size, MB (MiB)
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any, Sequence

from rerankpool.stats.probe import Readings, bytes_to_mb

log = logging.getLogger(__name__)


class NvmlProbe:
    """Reads NVIDIA GPUs through NVML; silently absent where there is no driver.

    ``available()`` is false, and ``read()`` returns ``{}``, when ``pynvml``
    is not installed or ``nvmlInit`` fails (no NVIDIA driver, e.g. on a Mac
    or a CPU-only box). ``gpu_indices`` restricts reading to those GPUs;
    indices that do not exist are logged and skipped. Call ``close()`` when
    done to release NVML.
    """

    name = "nvml"

    def __init__(self, gpu_indices: Sequence[int] | None = None) -> None:
        self._nvml: ModuleType | None = None
        self._handles: dict[int, Any] = {}
        self._failed: set[int] = set()
        try:
            import pynvml  # optional dependency (bench extra)
        except ImportError:
            log.info("NVML probe: pynvml not installed (pip install nvidia-ml-py); no GPU columns")
            return
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # NVMLError subclasses, or OSError from a broken driver
            log.info("NVML probe: nvmlInit failed (%s); no GPU columns", exc)
            return
        self._nvml = pynvml
        try:
            count = int(pynvml.nvmlDeviceGetCount())
            wanted = list(range(count)) if gpu_indices is None else list(gpu_indices)
            for index in wanted:
                if not 0 <= index < count:
                    log.warning("NVML probe: GPU %d requested but only %d present; skipping it", index, count)
                    continue
                self._handles[index] = pynvml.nvmlDeviceGetHandleByIndex(index)
        except Exception as exc:
            log.warning("NVML probe: could not enumerate GPUs (%s); no GPU columns", exc)
            self._handles.clear()
        if not self._handles:
            self.close()

    def available(self) -> bool:
        """True when NVML is initialised and at least one GPU is being read."""
        return self._nvml is not None and bool(self._handles)

    def gpu_indices(self) -> list[int]:
        """NVML indices of the GPUs being read."""
        return sorted(self._handles)

    def read(self) -> Readings:
        """One row of readings; see the module docstring for column names."""
        nvml = self._nvml
        if nvml is None:
            return {}
        row: Readings = {}
        for index, handle in self._handles.items():
            try:
                util = nvml.nvmlDeviceGetUtilizationRates(handle)
                mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            except Exception as exc:  # e.g. GPU fell off the bus; keep the other GPUs
                if index not in self._failed:
                    log.warning("NVML probe: reading GPU %d failed (%s); its columns are absent", index, exc)
                    self._failed.add(index)
                continue
            self._failed.discard(index)
            row[f"gpu.{index}.util_pct"] = float(util.gpu)
            row[f"gpu.{index}.mem_used_mb"] = bytes_to_mb(mem.used)
            row[f"gpu.{index}.mem_total_mb"] = bytes_to_mb(mem.total)
        return row

    def close(self) -> None:
        """Release NVML; later reads return ``{}``."""
        nvml, self._nvml = self._nvml, None
        self._handles = {}
        if nvml is not None:
            try:
                nvml.nvmlShutdown()
            except Exception as exc:
                log.debug("NVML probe: nvmlShutdown failed: %s", exc)

    def __enter__(self) -> NvmlProbe:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def nvml_smoke() -> dict[str, float]:
    """Take one NVML reading of every GPU, for a quick check on a GPU host.

    Raises ``RuntimeError`` when NVML is unavailable, so a caller that expects
    a GPU fails loudly instead of getting an empty dict.
    """
    with NvmlProbe() as probe:
        if not probe.available():
            raise RuntimeError("NVML unavailable: pynvml missing, no NVIDIA driver, or no GPU")
        return probe.read()
