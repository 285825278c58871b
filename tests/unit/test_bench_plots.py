"""Plots come out as non-empty PNGs, and leave out what nothing measured."""

from __future__ import annotations

import pytest

from rerankpool.bench.results import BaselineResult, ConfigResult, RequestSample, SweepResult

pytest.importorskip("matplotlib")

from rerankpool.bench.plots import plot_throughput_latency, plot_timeseries  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _sweep(gpu: bool = True, samples: bool = True) -> SweepResult:
    configs = []
    for batch in (8, 32, 64):
        for conc in (1, 4):
            rows = [{"elapsed_s": k * 0.5, "system.cpu_pct": 30.0 + k, "pool.queue_pairs": float(k % 4),
                     "pool.pairs_per_s": 100.0 * conc, **({"gpu.0.util_pct": 50.0 + k,
                                                          "gpu.0.mem_used_mb": 900.0} if gpu else {})}
                    for k in range(20)] if samples else []
            requests = [RequestSample(i * 0.1, i * 0.1 + 0.01 * batch / 8 + 0.001 * i, batch, True) for i in range(10)]
            configs.append(ConfigResult(batch, conc, "onnx", 1, 10 * batch, 10 * 0.01 * batch / 8 / conc,
                                        requests, [], rows))
    return SweepResult("42_plot", "Plot test", "", "2025-01-01 00:00:00", "m", "", True, "onnx", "cpu", "fp32",
                       configs=configs, baselines=[BaselineResult("st", 1000, 2.0, 32)])


def _is_png(path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG_MAGIC


def test_throughput_and_latency_plots(tmp_path) -> None:
    paths = plot_throughput_latency(_sweep(), tmp_path)
    assert [p.name for p in paths] == ["42_plot_throughput.png", "42_plot_latency.png",
                                       "42_plot_request_throughput.png"]
    assert all(_is_png(p) for p in paths)


def test_timeseries_plot_with_and_without_gpu(tmp_path) -> None:
    (with_gpu,) = plot_timeseries(_sweep(gpu=True), tmp_path / "a")
    (without,) = plot_timeseries(_sweep(gpu=False), tmp_path / "b")
    assert with_gpu.name == "42_plot_timeseries.png" and _is_png(with_gpu) and _is_png(without)
    assert plot_timeseries(_sweep(samples=False), tmp_path / "c") == []
