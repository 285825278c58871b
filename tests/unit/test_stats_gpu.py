"""NVML smoke test for a GPU host (e.g. the H100 box): skipped unless pynvml initialises."""

from __future__ import annotations

import re

import pytest

from rerankpool.stats.nvml import NvmlProbe, nvml_smoke

pytestmark = pytest.mark.gpu


def _nvml_works() -> bool:
    probe = NvmlProbe()
    try:
        return probe.available()
    finally:
        probe.close()


requires_nvml = pytest.mark.skipif(not _nvml_works(), reason="no NVML: pynvml missing or no NVIDIA driver/GPU")


@requires_nvml
def test_nvml_smoke_reading() -> None:
    reading = nvml_smoke()
    indices = sorted({int(m.group(1)) for k in reading if (m := re.fullmatch(r"gpu\.(\d+)\.\w+", k))})
    assert indices, reading
    for i in indices:
        assert 0 <= reading[f"gpu.{i}.util_pct"] <= 100
        assert reading[f"gpu.{i}.mem_total_mb"] > 1000
        assert 0 <= reading[f"gpu.{i}.mem_used_mb"] <= reading[f"gpu.{i}.mem_total_mb"]


@requires_nvml
def test_nvml_probe_restricted_to_gpu_0() -> None:
    with NvmlProbe(gpu_indices=[0]) as probe:
        assert set(probe.read()) == {"gpu.0.util_pct", "gpu.0.mem_used_mb", "gpu.0.mem_total_mb"}
