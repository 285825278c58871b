"""Unit tests for rerankpool.stats: fast (a few seconds), no GPU, no network."""

from __future__ import annotations

import gzip
import json
import logging
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rerankpool.stats import metal
from rerankpool.stats.metal import MetalProbe, parse_ioreg_performance_statistics
from rerankpool.stats.nvml import NvmlProbe, nvml_smoke
from rerankpool.stats.probe import BYTES_PER_MB, Probe
from rerankpool.stats.sampler import Sampler, next_tick
from rerankpool.stats.summary import correlation, describe
from rerankpool.stats.system import ProcessProbe
from rerankpool.stats.timeseries import (
    BATCH_EVENT_FIELDS,
    COLUMNS,
    column_doc,
    csv_columns,
    describe_columns,
    read_csv,
    read_jsonl,
    to_csv,
    write_jsonl,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WAIT_S = 10.0  # generous deadline for background work on a loaded 2-core box


# --------------------------------------------------------------------------- summary


@pytest.mark.parametrize("n", [1, 2, 7, 100, 1001])
def test_describe_matches_numpy(n: int) -> None:
    values = np.random.default_rng(n).lognormal(mean=3.0, sigma=0.7, size=n)
    s = describe(values.tolist())
    assert s.count == n
    assert s.avg == pytest.approx(values.mean())
    assert s.min == values.min() and s.max == values.max()
    for q in (50, 75, 90, 95, 99):
        assert getattr(s, f"p{q}") == pytest.approx(np.percentile(values, q))
    if n > 1:
        assert s.std == pytest.approx(values.std(ddof=1))
    else:
        assert s.std is None


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=50))
def test_describe_percentiles_ordered_and_bounded(values: list[float]) -> None:
    s = describe(values)
    tol = 1e-9 * max(1.0, abs(s.min), abs(s.max))
    chain = [s.min, s.p50, s.p75, s.p90, s.p95, s.p99, s.max]
    assert all(a <= b + tol for a, b in zip(chain, chain[1:]))


def test_describe_empty_is_none_not_zero() -> None:
    s = describe([])
    assert s.count == 0
    assert all(v is None for k, v in s.as_dict().items() if k != "count")


def test_describe_drops_missing_values() -> None:
    s = describe([1.0, None, float("nan"), 3.0])
    assert s.count == 2 and s.avg == 2.0 and s.p50 == 2.0


def test_correlation_pearson() -> None:
    rng = np.random.default_rng(0)
    xs = rng.normal(size=200)
    ys = 0.5 * xs + rng.normal(size=200)
    assert correlation(xs.tolist(), ys.tolist()) == pytest.approx(np.corrcoef(xs, ys)[0, 1])
    assert correlation([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert correlation([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_correlation_undefined_is_none() -> None:
    assert correlation([], []) is None
    assert correlation([1.0], [2.0]) is None
    assert correlation([1, 1, 1], [1, 2, 3]) is None  # constant series
    assert correlation([1, None, 3], [1, 2, None]) is None  # one complete pair left
    with pytest.raises(ValueError):
        correlation([1, 2], [1, 2, 3])


# --------------------------------------------------------------------------- ioreg / Metal


def test_ioreg_busy_capture() -> None:
    row = parse_ioreg_performance_statistics((FIXTURES / "ioreg_busy.txt").read_text())
    assert row == {
        "metal.util_pct": 99.0,
        "metal.mem_in_use_mb": 28367667200 / BYTES_PER_MB,
        "metal.mem_alloc_mb": 31368167424 / BYTES_PER_MB,
    }


def test_ioreg_idle_capture() -> None:
    row = parse_ioreg_performance_statistics((FIXTURES / "ioreg_idle.txt").read_text())
    assert row["metal.util_pct"] == 3.0
    assert row["metal.mem_in_use_mb"] == pytest.approx(550649856 / BYTES_PER_MB)
    assert row["metal.mem_alloc_mb"] == pytest.approx(7630618624 / BYTES_PER_MB)


def test_ioreg_spaces_around_equals() -> None:
    row = parse_ioreg_performance_statistics((FIXTURES / "ioreg_spaced.txt").read_text())
    # "In use system memory (driver)" (1 MiB) must not be taken for "In use system memory" (1 GiB)
    assert row == {"metal.util_pct": 42.0, "metal.mem_in_use_mb": 1024.0, "metal.mem_alloc_mb": 2048.0}


@pytest.mark.parametrize("text", ["", "no ioreg here", "\x00\xff{{}}", None])
def test_ioreg_garbage_gives_empty_dict(text: str | None) -> None:
    if text is None:
        text = (FIXTURES / "ioreg_garbage.txt").read_text()
    assert parse_ioreg_performance_statistics(text) == {}


def test_metal_probe_absent_off_macos() -> None:
    probe = MetalProbe()
    if sys.platform != "darwin":
        assert not probe.available()
        assert probe.read() == {}


def test_metal_probe_reads_ioreg(monkeypatch: pytest.MonkeyPatch) -> None:
    capture = (FIXTURES / "ioreg_idle.txt").read_text()
    monkeypatch.setattr(metal, "_is_macos_with_ioreg", lambda: True)
    monkeypatch.setattr(metal, "_run_ioreg", lambda timeout_s: capture)
    probe = MetalProbe()
    assert probe.available()
    assert probe.read()["metal.util_pct"] == 3.0


# --------------------------------------------------------------------------- ProcessProbe


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=WAIT_S)


def test_process_probe_reads_then_drops_dead_process(
    sleeper: subprocess.Popen[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    probe = ProcessProbe({"child": sleeper.pid})
    row = probe.read()
    assert row["proc.child.rss_mb"] > 0
    assert row["proc.child.cpu_pct"] >= 0
    assert row["system.mem_used_mb"] > 0
    assert 0 <= row["system.cpu_pct"] <= 100
    if sys.platform == "linux":
        assert 0 <= row["system.cpu_steal_pct"] <= 100

    sleeper.kill()
    sleeper.wait(timeout=WAIT_S)
    with caplog.at_level(logging.INFO, logger="rerankpool.stats.system"):
        for _ in range(3):
            row = probe.read()
            assert not any(k.startswith("proc.child.") for k in row)
            assert "system.cpu_pct" in row
    assert sum("child" in r.getMessage() for r in caplog.records) == 1  # logged once
    assert probe.roles() == []


def test_process_probe_drops_unreaped_zombie(sleeper: subprocess.Popen[bytes]) -> None:
    probe = ProcessProbe({"child": sleeper.pid}, include_system=False)
    sleeper.kill()  # not reaped until the fixture's wait(): a zombie meanwhile
    deadline = time.monotonic() + WAIT_S
    while "proc.child.rss_mb" in probe.read():
        assert time.monotonic() < deadline, "killed child never dropped out"
    assert probe.read() == {}


def test_process_probe_track_new_pid(sleeper: subprocess.Popen[bytes]) -> None:
    probe = ProcessProbe({}, include_system=False)
    assert probe.read() == {}
    probe.track("worker-0", sleeper.pid)
    assert set(probe.read()) == {"proc.worker-0.cpu_pct", "proc.worker-0.rss_mb"}
    probe.untrack("worker-0")
    assert probe.read() == {}


# --------------------------------------------------------------------------- NVML


def test_nvml_probe_without_gpu_is_silent() -> None:
    probe = NvmlProbe()
    try:
        if probe.available():
            pytest.skip("this machine has an NVIDIA GPU; see test_stats_gpu.py")
        assert probe.read() == {}
        assert probe.gpu_indices() == []
    finally:
        probe.close()
    with pytest.raises(RuntimeError):
        nvml_smoke()


def _fake_pynvml(gpu_count: int) -> types.ModuleType:
    fake = types.ModuleType("pynvml")
    calls: list[str] = []
    fake.nvmlInit = lambda: calls.append("init")
    fake.nvmlShutdown = lambda: calls.append("shutdown")
    fake.nvmlDeviceGetCount = lambda: gpu_count
    fake.nvmlDeviceGetHandleByIndex = lambda i: i
    fake.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=10 * (h + 1), memory=0)
    fake.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(
        used=(h + 1) * BYTES_PER_MB, total=80 * 1024 * BYTES_PER_MB, free=0)
    fake.calls = calls
    return fake


def test_nvml_probe_columns_with_fake_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_pynvml(gpu_count=3)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with NvmlProbe(gpu_indices=[0, 2, 7]) as probe:  # 7 does not exist: skipped
        assert probe.available() and probe.gpu_indices() == [0, 2]
        assert probe.read() == {
            "gpu.0.util_pct": 10.0, "gpu.0.mem_used_mb": 1.0, "gpu.0.mem_total_mb": 81920.0,
            "gpu.2.util_pct": 30.0, "gpu.2.mem_used_mb": 3.0, "gpu.2.mem_total_mb": 81920.0,
        }
    assert fake.calls == ["init", "shutdown"]


def test_nvml_probe_init_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_pynvml(gpu_count=1)

    def fail() -> None:
        raise OSError("NVML Shared Library Not Found")

    fake.nvmlInit = fail
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    probe = NvmlProbe()
    assert not probe.available() and probe.read() == {}


def test_nvml_probe_without_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ImportError
    probe = NvmlProbe()
    assert not probe.available() and probe.read() == {}


# --------------------------------------------------------------------------- Sampler


class CountingProbe:
    """A probe whose readings count reads; ``fail_on`` reads raise."""

    name = "counting"

    def __init__(self, fail_on: set[int] | None = None) -> None:
        self.reads = 0
        self.fail_on = fail_on or set()

    def available(self) -> bool:
        return True

    def read(self) -> dict[str, float]:
        self.reads += 1
        if self.reads in self.fail_on:
            raise RuntimeError("probe hiccup")
        return {"fake.reads": float(self.reads)}


class UnavailableProbe:
    name = "absent"

    def available(self) -> bool:
        return False

    def read(self) -> dict[str, float]:
        raise AssertionError("an unavailable probe must not be read")


def test_fake_probes_follow_protocol() -> None:
    assert isinstance(CountingProbe(), Probe)
    assert isinstance(ProcessProbe({}), Probe)
    assert isinstance(NvmlProbe(), Probe)
    assert isinstance(MetalProbe(), Probe)


def test_sampler_rows_probes_and_pool_stats(tmp_path: Path) -> None:
    out = tmp_path / "run" / "samples.jsonl"
    probe = CountingProbe(fail_on={2})
    with Sampler(out, interval_s=0.005, probes=[probe, UnavailableProbe()],
                 pool_stats=lambda: {"pool.queue_pairs": 7, "pool.pairs_per_s": 123.5}) as sampler:
        assert sampler.wait_for_rows(6, timeout_s=WAIT_S)
    rows = sampler.rows()
    assert len(rows) >= 6
    elapsed = [r["elapsed_s"] for r in rows]
    assert all(a < b for a, b in zip(elapsed, elapsed[1:]))
    assert all(isinstance(r["t"], float) and abs(r["t"] - time.time()) < 600 for r in rows)
    assert all(r["pool.queue_pairs"] == 7 and r["pool.pairs_per_s"] == 123.5 for r in rows)
    assert "fake.reads" not in rows[1]  # the probe's second read raised: only its columns missing
    assert [r["fake.reads"] for r in rows[2:5]] == [3.0, 4.0, 5.0]
    assert list(rows[0])[:2] == ["t", "elapsed_s"]
    assert read_jsonl(out) == rows  # the file holds exactly what was sampled


def test_sampler_survives_failing_pool_stats(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> dict[str, Any]:
        raise ConnectionError("broker gone")

    with caplog.at_level(logging.WARNING, logger="rerankpool.stats.sampler"):
        with Sampler(tmp_path / "s.jsonl", interval_s=0.005, probes=[CountingProbe()], pool_stats=broken) as sampler:
            assert sampler.wait_for_rows(4, timeout_s=WAIT_S)
    rows = sampler.rows()
    assert all("fake.reads" in r and not any(k.startswith("pool.") for k in r) for r in rows)
    assert sum("pool_stats" in r.getMessage() for r in caplog.records) == 1  # warned once


def test_sampler_stop_is_immediate(tmp_path: Path) -> None:
    sampler = Sampler(tmp_path / "s.jsonl", interval_s=60.0).start()
    assert sampler.wait_for_rows(1, timeout_s=WAIT_S)
    t0 = time.monotonic()
    sampler.stop()
    assert time.monotonic() - t0 < 2.0  # would be ~60 s with time.sleep scheduling
    assert sampler.rows_taken == 1
    sampler.stop()  # idempotent
    assert not sampler.wait_for_rows(2, timeout_s=WAIT_S)  # stopped: returns without waiting out


def test_sampler_memory_bounded_file_complete(tmp_path: Path) -> None:
    out = tmp_path / "s.jsonl"
    with Sampler(out, interval_s=0.002, max_rows=3) as sampler:
        assert sampler.wait_for_rows(8, timeout_s=WAIT_S)
    assert len(sampler.rows()) == 3
    on_disk = read_jsonl(out)
    assert len(on_disk) == sampler.rows_taken >= 8
    assert on_disk[-3:] == sampler.rows()


def test_sampler_rows_flushed_while_running(tmp_path: Path) -> None:
    out = tmp_path / "s.jsonl"
    with Sampler(out, interval_s=60.0) as sampler:
        assert sampler.wait_for_rows(1, timeout_s=WAIT_S)
        assert len(read_jsonl(out)) == 1  # on disk before stop(): survives a crash


def test_sampler_rejects_bad_interval(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Sampler(tmp_path / "s.jsonl", interval_s=0)


def test_next_tick_is_drift_free() -> None:
    assert next_tick(100.0, 0.25, 100.01) == (1, 100.25)
    assert next_tick(100.0, 0.25, 100.26) == (2, 100.5)  # anchored to start, not to "now"
    k, deadline = next_tick(100.0, 0.25, 101.1)  # overran: missed ticks skipped, not replayed
    assert k == 5 and deadline == pytest.approx(101.25)


# --------------------------------------------------------------------------- time-series files


ROWS: list[dict[str, Any]] = [
    {"t": 1700000000.125, "elapsed_s": 0.0, "proc.broker.rss_mb": 51.25, "gpu.10.util_pct": 1.0,
     "gpu.2.util_pct": 99.0, "pool.queue_pairs": 12},
    {"t": 1700000000.375, "elapsed_s": 0.25, "proc.broker.rss_mb": 51.5, "batch.worker": "worker-0",
     "pool.pairs_per_s": 0.1},
    {"elapsed_s": 0.5, "t": 1700000000.625, "system.cpu_pct": 37.5},
]


def test_csv_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "samples.csv"
    to_csv(ROWS, path)
    header = path.read_text().splitlines()[0].split(",")
    assert header[:2] == ["t", "elapsed_s"]
    assert header.index("gpu.2.util_pct") < header.index("gpu.10.util_pct")
    assert sorted(header) == sorted({k for r in ROWS for k in r})
    assert read_csv(path) == ROWS


def test_csv_missing_cells_are_empty(tmp_path: Path) -> None:
    path = tmp_path / "samples.csv"
    to_csv([{"t": 1.0, "a": None, "b": float("nan")}, {"t": 2.0, "a": 3}], path)
    lines = path.read_text().splitlines()
    assert lines == ["t,a,b", "1.0,,", "2.0,3,"]
    assert csv_columns([]) == []


def test_jsonl_round_trip_and_truncated_tail(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    write_jsonl([*ROWS, {"t": 1.0, "x": np.float32(0.5), "n": np.int64(3), "bad": float("inf")}], path)
    rows = read_jsonl(path)
    assert rows[:3] == ROWS
    assert rows[3] == {"t": 1.0, "x": 0.5, "n": 3, "bad": None}
    with path.open("a") as fh:
        fh.write('{"t": 2.0, "elapsed')  # a crash mid-line
    assert len(read_jsonl(path)) == 4
    assert all(json.loads(line) for line in path.read_text().splitlines()[:4])


def test_read_jsonl_reads_a_gzipped_file(tmp_path: Path) -> None:
    """The committed results keep NAME_..._timeseries.jsonl.gz."""
    path = tmp_path / "rows.jsonl"
    write_jsonl(ROWS, path)
    packed = tmp_path / "rows.jsonl.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    assert read_jsonl(packed) == ROWS


def test_columns_documented() -> None:
    table = describe_columns()
    assert table.startswith("| column | unit |")
    for name in (*BATCH_EVENT_FIELDS, "t", "elapsed_s", "system.cpu_pct", "metal.util_pct"):
        assert f"`{name}`" in table
    assert column_doc("proc.worker-0.rss_mb") == COLUMNS["proc.<role>.rss_mb"]
    assert column_doc("gpu.3.util_pct").unit == "%"
    assert column_doc("worker.worker-1.mlx_active_mb").unit == "MB"
    assert column_doc("no.such.column") is None
    assert all(doc.description for doc in COLUMNS.values())


def test_every_probe_column_is_documented(sleeper: subprocess.Popen[bytes]) -> None:
    names = set(ProcessProbe({"worker-0": sleeper.pid}).read())
    names |= set(parse_ioreg_performance_statistics((FIXTURES / "ioreg_busy.txt").read_text()))
    names |= {"gpu.0.util_pct", "gpu.0.mem_used_mb", "gpu.0.mem_total_mb"}
    names |= {f"worker.w.{k}" for k in ("torch_cuda_allocated_mb", "torch_cuda_reserved_mb",
                                         "torch_cuda_peak_allocated_mb", "torch_mps_allocated_mb",
                                         "torch_mps_driver_mb", "mlx_active_mb", "mlx_peak_mb", "mlx_cache_mb")}
    assert [n for n in names if column_doc(n) is None] == []


def test_module_imports_do_not_pull_frameworks() -> None:
    code = ("import sys, rerankpool.stats; "
            "bad = [m for m in ('torch', 'mlx', 'pynvml') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60,
                   cwd=Path(__file__).resolve().parents[2])

