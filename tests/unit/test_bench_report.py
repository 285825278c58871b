"""The markdown report: reference layout, number formats, our additions, and a parse round trip."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rerankpool.bench.compare import parse_reference_report, render_comparison
from rerankpool.bench.report import NO_PROBE, render_report, render_timeseries_report
from rerankpool.bench.results import (
    BaselineResult,
    BatchEvent,
    ConfigResult,
    RequestSample,
    SweepResult,
)

REFERENCE_09 = "09_dynamic_batch_max_batch_sweep_mlx_batch256.md"


def _reference(name: str) -> str:
    for directory in Path(__file__).resolve().parents:
        path = directory / "shared" / "reference" / name
        if path.is_file():
            return path.read_text(encoding="utf-8")
    pytest.skip(f"shared/reference/{name} not found beside the checkout")


def _requests(latencies_ms: list[float], pairs: int) -> list[RequestSample]:
    return [RequestSample(100.0 + i, 100.0 + i + lat / 1000.0, pairs, True) for i, lat in enumerate(latencies_ms)]


def _config(batch: int, conc: int, gpu: bool) -> ConfigResult:
    samples = []
    for k in range(100):
        row = {"t": 500.0 + k, "elapsed_s": float(k), "system.cpu_pct": 50.0 + k % 3,
               "proc.broker.cpu_pct": 4.0, "proc.worker-0.cpu_pct": 95.0,
               "pool.queue_pairs": float(k % 5), "pool.pairs_per_s": 40.0}
        if gpu:
            row.update({"gpu.0.util_pct": 90.0, "gpu.0.mem_used_mb": 1000.0,
                        "gpu.1.util_pct": 70.0, "gpu.1.mem_used_mb": 500.0})
        samples.append(row)
    return ConfigResult(
        batch=batch, concurrency=conc, engine="onnx", workers=2, pairs=4 * batch, wall_s=1.0,
        # 100/200/300/400 ms: avg 250, numpy P95 385, P99 397.
        requests=_requests([100.0, 200.0, 300.0, 400.0], batch),
        batch_events=[
            BatchEvent(t=0.1, worker="worker-0", size=2 * batch, tokenize_ms=5.0, inference_ms=20.0,
                       queue_wait_ms=1.0, real_tokens=300, padded_tokens=400),
            BatchEvent(t=0.2, worker="worker-1", size=2 * batch, tokenize_ms=5.0, inference_ms=40.0,
                       queue_wait_ms=1.0, real_tokens=200, padded_tokens=400),
        ],
        samples=samples,
    )


def make_sweep(real_scores: bool = False, gpu: bool = True, baselines: bool = True) -> SweepResult:
    return SweepResult(
        name="99_test_sweep", title="Test sweep", description="A synthetic sweep for tests",
        timestamp="2025-01-01 12:00:00", model="stand-in/minilm", model_label="stand-in for cross-encoder/x",
        real_scores=real_scores, engine="onnx", device="cpu", dtype="int8",
        batching={"max_batch": 256, "max_batch_tokens": 16384, "timeout_ms": 50.0, "bucket_edges": [64, 128]},
        hardware={"cpu": "test cpu", "cores": 2}, software={"python": "3.11", "numpy": "2.4"},
        data="synthetic pairs",
        configs=[_config(10, 1, gpu), _config(10, 4, gpu), _config(20, 4, gpu)],
        baselines=[BaselineResult("st-cross-encoder", pairs=20, wall_s=1.0, batch_size=32, note="in-process")]
        if baselines else [],
    )


def _headings(text: str) -> list[str]:
    """Markdown headings, with the per-config ones reduced to "### Config"."""
    heads = [line.strip() for line in text.splitlines() if line.startswith("#")]
    return [re.sub(r"^### Config \d+:.*", "### Config", h) for h in heads[1:]]  # [1:]: the title


def _is_subsequence(needles: list[str], haystack: list[str]) -> bool:
    it = iter(haystack)
    return all(any(n == h for h in it) for n in needles)


def _section(text: str, heading: str) -> str:
    return text.split(heading, 1)[1].split("\n## ", 1)[0]


def test_every_reference_heading_appears_in_order() -> None:
    ours = render_report(make_sweep())
    for name in (REFERENCE_09, "14_optimized_production.md"):
        ref = list(dict.fromkeys(_headings(_reference(name))))  # one "### Config" group suffices
        assert _is_subsequence(ref, _headings(ours)), (name, ref, _headings(ours))
    assert ours.startswith("# 99_test_sweep\n\n_A synthetic sweep for tests_\n\n**Timestamp:** 2025-01-01 12:00:00")
    assert "**Backend:** `onnx` | **Device:** `cpu`" in ours
    assert "**Dynamic Batching:** enabled (max_batch=256, timeout=50ms" in ours


def test_our_extra_sections_sit_in_order() -> None:
    heads = _headings(render_report(make_sweep()))
    order = ["## Setup", "## Results Summary", "## Baseline", "## Detailed Metrics",
             "## Overall Summary", "## Dashboard Metrics Summary", "## Dashboard Time-Series Data",
             "## Metric definitions"]
    assert _is_subsequence(order, heads)
    assert heads[-1] == "## Metric definitions"


def test_reference_table_columns_are_kept() -> None:
    ours = render_report(make_sweep())
    for header in (
        "| Metric | Value |\n|--------|-------|",
        "| Latency Range | Avg Throughput | Min Throughput | Max Throughput | Count |",
        "| Metric | Value | Config |",
        "| Metric | Avg | Min | Max | P50 | P95 |",
        "| Stage | Percentage |",
        "| Worker ID | Batches | Pairs | Avg Inference (ms) | P95 Inference (ms) | Throughput (pairs/s) |",
    ):
        assert header in ours, header
    for row in ("| Average |", "| Min |", "| Max |", "| Std Dev |", "| P50 |", "| P90 |", "| P95 |", "| P99 |"):
        assert row in ours


def test_summary_row_numbers_and_throughput_kept_apart() -> None:
    summary = _section(render_report(make_sweep()), "## Results Summary")
    assert ("| Batch | Conc | Pairs | Time(s) | Lat Avg | Lat P95 | Lat P99 | Agg TP (pairs/s) "
            "| Req TP P50 | Req TP P95 |") in summary
    # 40 pairs in 1 s = 40.0 aggregate; per request 100, 50, 33.3, 25 pairs/s -> P50 41.7, P95 92.5.
    assert "| 10 | 4 | 40 | 1.00 | 250.0ms | 385.0ms | 397.0ms | 40.0 | 41.7 | 92.5 |" in summary
    assert "TP Avg" not in summary


def test_detailed_metrics_formats_like_the_reference() -> None:
    detail = _section(render_report(make_sweep()), "## Detailed Metrics")
    assert "### Config 2: batch=10, concurrency=4\n\n**Total:** 40 pairs in 1.00s" in detail
    assert "**Aggregate throughput:** 40.00 pairs/s (all 4 clients together" in detail
    assert "| Average | 250.00 |" in detail and "| P95 | 385.00 |" in detail
    assert "_Per request:" in detail
    # Latency P50/P75/P90 = 250/325/370 ms: one request in each bucket.
    assert "| < 250.0ms (P50) | 75.00 | 50.00 | 100.00 | 2 |" in detail
    assert "| 250.0-325.0ms (P50-P75) | 33.33 | 33.33 | 33.33 | 1 |" in detail
    assert "| 325.0-370.0ms (P75-P90) | - | - | - | 0 |" in detail
    assert "| >= 370.0ms (P90+) | 25.00 | 25.00 | 25.00 | 1 |" in detail
    assert re.search(r"\*\*Correlation:\*\* -0\.\d{3} \(negative correlation expected", detail)


def test_dashboard_uses_probes_and_says_na_without_them() -> None:
    with_gpu = _section(render_report(make_sweep(gpu=True)), "## Dashboard Metrics Summary")
    assert "| GPU Memory (MB) | 1500.0 | 1500.0 | 1500.0 | 1500.0 | 1500.0 |" in with_gpu  # summed
    assert "| GPU Utilization (%) | 80.0 |" in with_gpu  # averaged over GPUs
    assert "| Padding Waste (%) | 37.5 | 25.0 | 50.0 |" in with_gpu
    without = _section(render_report(make_sweep(gpu=False)), "## Dashboard Metrics Summary")
    assert f"| GPU Memory (MB) | {NO_PROBE} |" in without
    assert f"| GPU Utilization (%) | {NO_PROBE} |" in without
    assert "| CPU Usage (%) | 51.0 |" in without


def test_stage_breakdown_and_per_worker() -> None:
    text = render_report(make_sweep())
    stages = _section(text, "### Stage Breakdown")
    # Per pair: tokenize 5, queue 1, inference 30 ms; client latency 250 ms -> other 214 ms.
    assert "| Tokenization | 2.0% | 5.00 |" in stages
    assert "| Model Inference | 12.0% | 30.00 |" in stages
    assert "| Other (broker+network) | 85.6% | 214.00 |" in stages
    workers = _section(text, "### Per-Worker Statistics")
    # worker-0: 3 batches, 80 pairs over 3 s of wall time; busy 75 ms of 3000.
    assert "| worker-0 | 3 | 80 | 20.0 | 20.0 | 26.7 | 2.5 |" in workers


def test_hops_table_takes_medians_and_is_left_out_for_older_results() -> None:
    sweep = make_sweep()
    assert "Where a Request's Time Goes" not in render_report(sweep)  # no hop timings recorded
    config = sweep.configs[0]  # requests of 100-400 ms: p50 250
    config.batch_events = [
        BatchEvent(t=0.1, worker="worker-0", size=8, tokenize_ms=5.0, inference_ms=20.0, queue_wait_ms=1.0,
                   real_tokens=300, padded_tokens=300, round_trip_ms=40.0, worker_ms=30.0, device_ms=12.0),
        BatchEvent(t=0.2, worker="worker-1", size=8, tokenize_ms=7.0, inference_ms=22.0, queue_wait_ms=1.0,
                   real_tokens=300, padded_tokens=300, round_trip_ms=60.0, worker_ms=32.0, device_ms=14.0),
    ]
    hops = _section(render_report(sweep), "### Where a Request's Time Goes")
    # client+broker 250-50; broker<->worker median(10, 28); hand-offs median(5, 3); ipc median(8, 8); model 13.
    assert "| 10 | 1 | all (p50) | 250.00 | 200.00 | 19.00 | 4.00 | 6.00 | 8.00 | 13.00 |" in hops
    assert "slowest 2 % |" not in hops  # too few batches for a tail row


def test_hops_tail_row_takes_the_slowest_batches() -> None:
    sweep = make_sweep()
    config = sweep.configs[0]
    config.requests = _requests([20.0] * 98 + [95.0, 105.0], 10)  # the slowest 2 %: 95 and 105 ms, median 100
    # 98 batches of 10 ms round trips, two of 90 ms in which every hop is 9x longer.
    fast = [BatchEvent(t=0.1, worker="worker-0", size=8, tokenize_ms=2.0, inference_ms=4.0, queue_wait_ms=1.0,
                       real_tokens=300, padded_tokens=300, round_trip_ms=10.0, worker_ms=7.0, device_ms=3.0)]
    slow = [BatchEvent(t=0.1, worker="worker-1", size=8, tokenize_ms=18.0, inference_ms=36.0, queue_wait_ms=1.0,
                       real_tokens=300, padded_tokens=300, round_trip_ms=90.0, worker_ms=63.0, device_ms=27.0)]
    config.batch_events = fast * 98 + slow * 2
    hops = _section(render_report(sweep), "### Where a Request's Time Goes")
    assert "| 10 | 1 | all (p50) | 20.00 | 10.00 | 3.00 | 1.00 | 2.00 | 1.00 | 3.00 |" in hops
    assert "| 10 | 1 | slowest 2 % | 100.00 | 10.00 | 27.00 | 9.00 | 18.00 | 9.00 | 27.00 |" in hops


def test_stand_in_warning_only_without_real_scores() -> None:
    assert "scores of this run are meaningless" in render_report(make_sweep(real_scores=False))
    assert "meaningless" not in render_report(make_sweep(real_scores=True))


def test_setup_records_hardware_software_model_data() -> None:
    setup = _section(render_report(make_sweep()), "## Setup")
    for text in ("| cpu | test cpu |", "| numpy | 2.4 |", "`stand-in/minilm` (stand-in for cross-encoder/x)",
                 "| Data | synthetic pairs |", "max_batch_tokens=16384"):
        assert text in setup


def test_baseline_ratios() -> None:
    text = render_report(make_sweep())
    baseline = _section(text, "## Baseline")
    assert "| `st-cross-encoder` | 20 | 1.00 | 32 | 20.0 | in-process |" in baseline
    assert "| batch=10, conc=4 | 40.0 | 2.00× |" in baseline
    assert "| batch=20, conc=4 | 80.0 | 4.00× |" in baseline
    assert "**Best:** batch=20, conc=4 at 80.0 pairs/s (aggregate) = 4.00× `st-cross-encoder`." in baseline
    assert "## Baseline" not in render_report(make_sweep(baselines=False))


def test_overall_summary_and_definitions() -> None:
    text = render_report(make_sweep())
    overall = _section(text, "## Overall Summary")
    assert "| Best Throughput (aggregate) | 80.00 p/s | batch=20, conc=4 |" in overall
    assert "| Best Latency (avg) | 250.00ms | batch=10, conc=1 |" in overall
    definitions = _section(text, "## Metric definitions")
    for term in ("Latency", "Per-request throughput", "Aggregate throughput", "Padding waste", "Queue wait"):
        assert f"**{term}" in definitions
    assert "Full time-series data is available in: `99_test_sweep_timeseries.md`" in text


def test_plots_are_linked_when_given() -> None:
    text = render_report(make_sweep(), plots=["99_test_sweep_throughput.png"])
    assert "![99_test_sweep_throughput](99_test_sweep_throughput.png)" in text


def test_timeseries_report_downsamples_and_documents_columns() -> None:
    text = render_timeseries_report(make_sweep(), {"99_test_sweep.json": "raw sweep data"})
    assert "| `99_test_sweep.json` | raw sweep data |" in text
    assert "| `gpu.<i>.util_pct` | % |" in text and "| `proc.<role>.cpu_pct` | % |" in text
    assert "| `batch.queue_wait_ms` | ms |" in text
    config = text.split("## Config 1:", 1)[1].split("## Config 2:", 1)[0]
    rows = [line for line in config.splitlines() if re.match(r"\| \d", line)]
    assert 2 <= len(rows) <= 40
    assert rows[0].startswith("| 0.0 |") and rows[-1].startswith("| 99.0 |")
    assert "| Elapsed (s) | CPU Usage (%) | GPU Utilization (%) | GPU Memory (MB) |" in config
    no_gpu = render_timeseries_report(make_sweep(gpu=False), {})
    assert "GPU Utilization" not in no_gpu


def test_round_trip_through_the_parser() -> None:
    sweep = make_sweep()
    parsed = parse_reference_report(render_report(sweep))
    assert parsed["name"] == "99_test_sweep"
    assert parsed["backend"] == "onnx" and parsed["device"] == "cpu"
    assert parsed["throughput_layout"] == "separated"
    assert [(r["batch"], r["conc"]) for r in parsed["configs"]] == [(10, 1), (10, 4), (20, 4)]
    row = parsed["configs"][1]
    assert row == {"batch": 10, "conc": 4, "pairs": 40, "time_s": 1.0, "lat_avg_ms": 250.0,
                   "lat_p95_ms": 385.0, "lat_p99_ms": 397.0, "tp_avg": 40.0, "tp_p50": 41.7, "tp_p95": 92.5}
    comparison = render_comparison(sweep, parsed)
    assert "| batch=10, conc=4, workers=2 | 40 / 40 | 250.0 / 250.0 (+0.0%) |" in comparison


def test_elapsed_is_relative_to_the_config_first_sample() -> None:
    from rerankpool.bench import analysis

    assert analysis.elapsed([{"elapsed_s": 100.0, "t": 9.0}, {"elapsed_s": 101.5}]) == [0.0, 1.5]
    assert analysis.elapsed([{"t": 1e9}, {"t": 1e9 + 2}]) == [0.0, 2.0]
    assert analysis.elapsed([{"t": 5.0}, {}]) == [0.0, None]
