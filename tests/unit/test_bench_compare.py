"""Parsing reports in the reference layout, and the side-by-side comparison."""

from __future__ import annotations

from pathlib import Path

import pytest

from rerankpool.bench.compare import parse_reference_report, render_comparison


def _reference(name: str) -> str:
    for directory in Path(__file__).resolve().parents:
        path = directory / "shared" / "reference" / name
        if path.is_file():
            return path.read_text(encoding="utf-8")
    pytest.skip(f"shared/reference/{name} not found beside the checkout")


@pytest.fixture
def ref09() -> dict:
    return parse_reference_report(_reference("09_dynamic_batch_max_batch_sweep_mlx_batch256.md"))


@pytest.fixture
def ref14() -> dict:
    return parse_reference_report(_reference("14_optimized_production.md"))


def test_parse_report_09(ref09: dict) -> None:
    assert ref09["name"] == "09_dynamic_batch_max_batch_sweep_mlx_batch256"
    assert ref09["model"] == "cross-encoder/ms-marco-MiniLM-L-6-v2"
    assert (ref09["backend"], ref09["device"]) == ("mlx", "mps")
    assert ref09["timestamp"] == "2025-12-26 16:34:13"
    assert ref09["dynamic_batching"] == "enabled (max_batch=256, timeout=50ms)"
    assert ref09["throughput_layout"] == "mixed"
    assert ref09["configs"] == [{
        "batch": 32, "conc": 4, "pairs": 16000, "time_s": 23.82, "lat_avg_ms": 190.0,
        "lat_p95_ms": 258.9, "lat_p99_ms": 306.4, "tp_avg": 671.6, "tp_p95": 202.5,
    }]


def test_parse_report_14(ref14: dict) -> None:
    assert ref14["backend"] == "pytorch"
    assert [(r["batch"], r["conc"]) for r in ref14["configs"]] == [(32, 1), (48, 1), (64, 1), (96, 1)]
    last = ref14["configs"][-1]
    assert (last["pairs"], last["time_s"], last["lat_p99_ms"], last["tp_avg"], last["tp_p95"]) == (
        40800, 60.04, 192.1, 679.6, 741.7)


def test_parse_rejects_text_without_a_summary() -> None:
    with pytest.raises(ValueError, match="Results Summary"):
        parse_reference_report("# nothing here\n")


def test_comparison_matches_by_batch_and_conc_and_notes_the_mixing(ref09: dict, ref14: dict) -> None:
    ours = {"name": "ours", "configs": [
        {"batch": 32, "conc": 1, "pairs": 16000, "time_s": 20.0, "lat_avg_ms": 50.0, "lat_p95_ms": 80.0,
         "lat_p99_ms": 100.0, "tp_avg": 800.0, "tp_p95": 702.2},
        {"batch": 128, "conc": 1, "pairs": 1, "time_s": 1.0, "lat_avg_ms": None, "lat_p95_ms": None,
         "lat_p99_ms": None, "tp_avg": 1.0, "tp_p95": None},
    ]}
    text = render_comparison(ours, ref14)
    # (800 - 564.7) / 564.7 = +41.7%; 50 vs 56.6 = -11.7%.
    assert ("| batch=32, conc=1 | 16000 / 16000 | 50.0 / 56.6 (-11.7%) | 80.0 / 90.3 (-11.4%) | "
            "100.0 / 103.4 (-3.3%) | 800.0 / 564.7 (+41.7%) | 702.2 / 702.2 (+0.0%) |") in text
    assert "**Only in ours:** batch=128, conc=1" in text
    assert "**Only in the reference:** batch=48, conc=1; batch=64, conc=1; batch=96, conc=1" in text
    assert "Pairs / Time(s) within 1% in 4 of its 4 rows" in text
    note = render_comparison(ours, ref09)
    assert "at batch=32, conc=4 TP Avg is 671.6 but TP P95 only 202.5" in note
    assert "_No configs in common" in note
