"""The broker's history (``broker/history.py``): one row a second, bounded, and the recent summary."""

from __future__ import annotations

import pytest

from rerankpool.broker.history import RECENT_ERRORS, History

WORKERS = [{"name": "h:1", "model": "m", "in_flight": 1, "heartbeat_age_s": 0.2},
           {"name": "h:2", "model": "m", "in_flight": 0, "heartbeat_age_s": 4.0, "silent": True}]
MODELS = [{"name": "m", "workers": 2, "queued_pairs": 7}]


def test_a_second_becomes_a_row_of_rates_percentiles_and_stage_times():
    h = History()
    for ms in range(1, 101):
        h.request_done(float(ms), when=100.0)
    h.batch_done("h:1", "m", 30, queue_ms=2.0, tokenize_ms=3.0, inference_ms=10.0, round_trip_ms=15.0,
                 real_tokens=900, padded_tokens=1000)
    h.batch_done("h:1", "m", 10, queue_ms=4.0, tokenize_ms=1.0, inference_ms=6.0, round_trip_ms=9.0,
                 real_tokens=100, padded_tokens=100)
    h.batch_failed("h:2")
    h.error("overloaded", "too many", when=100.0)
    row = h.roll(100.5, 0.5, queued_pairs=7, requests_in_flight=3, workers=WORKERS, models=MODELS)
    assert row["pairs_per_s"] == 80 and row["requests_per_s"] == 200 and row["errors_per_s"] == 2
    assert row["latency_p50_ms"] == pytest.approx(50.5) and row["latency_p99_ms"] == pytest.approx(99.01)
    assert (row["queue_ms"], row["tokenize_ms"], row["inference_ms"], row["batches"]) == (3.0, 2.0, 8.0, 2)
    assert row["padding_pct"] == pytest.approx(100 * 100 / 1100) and row["errors"] == {"overloaded": 1}
    one, two = row["workers"]["h:1"], row["workers"]["h:2"]
    assert (one["pairs_per_s"], one["batches"], one["batch_p95_ms"], one["errors"]) == (80, 2, pytest.approx(14.7), 0)
    assert (two["batches"], two["errors"], two["heartbeat_age_s"], two["batch_p95_ms"]) == (0, 1, 4.0, None)
    assert row["models"] == {"m": {"workers": 2, "queued_pairs": 7, "pairs_per_s": 80}}
    assert (one["state"], two["state"]) == ("ok", "silent")
    empty = h.roll(101.5, 1.0, 0, 0, [], [])
    assert empty["pairs_per_s"] == 0 and empty["latency_p50_ms"] is None and empty["padding_pct"] is None


def test_the_history_and_its_errors_stay_bounded():
    h = History(seconds=5)
    for second in range(50):
        h.error("timeout", f"late {second}")
        h.roll(float(second), 1.0, 0, 0, [], [])
    assert len(h.rows) == 5 and h.rows[0]["t"] == 45.0
    assert len(h.errors) == RECENT_ERRORS and h.errors[-1]["message"] == "late 49"


def test_recent_gives_exact_percentiles_over_the_window_and_batch_weighted_stage_times():
    h = History()
    h.request_done(1000.0, when=80.0)  # outside the 10 s window
    for ms in (10.0, 20.0, 30.0):
        h.request_done(ms, when=95.0)
    h.batch_done("w", "m", 4, 1.0, 1.0, 10.0, 12.0, 40, 40)
    h.roll(95.0, 1.0, 0, 0, [], [])
    for _ in range(3):
        h.batch_done("w", "m", 4, 1.0, 1.0, 2.0, 4.0, 40, 40)
    h.roll(96.0, 1.0, 0, 0, [], [])
    recent = h.recent(100.0)
    assert recent["latency_p50_ms"] == 20.0 and recent["latency_p99_ms"] == pytest.approx(29.8)
    assert recent["inference_ms"] == pytest.approx((10.0 + 3 * 2.0) / 4) and recent["pairs_per_s"] == 8.0


def test_a_worker_far_slower_than_its_peers_is_flagged_slow():
    h = History()
    workers = [{"name": f"w{i}", "model": "m", "in_flight": 0, "heartbeat_age_s": 0.1} for i in range(3)]
    for i, ms in enumerate((10.0, 11.0, 40.0)):
        h.batch_done(f"w{i}", "m", 4, 1.0, 1.0, ms, ms, 40, 40)
    row = h.roll(1.0, 1.0, 0, 0, workers, [])
    assert [w["state"] for w in row["workers"].values()] == ["ok", "ok", "slow"]


def test_a_worker_that_goes_away_stays_a_minute_as_lost():
    h = History()
    alive = [{"name": "a", "model": "m", "in_flight": 0, "heartbeat_age_s": 0.1},
             {"name": "b", "model": "m", "in_flight": 0, "heartbeat_age_s": 0.9, "silent": True}]
    h.roll(10.0, 1.0, 0, 0, alive, [])
    row = h.roll(11.0, 1.0, 0, 0, alive[:1], [])
    assert row["workers"]["b"]["state"] == "lost" and row["workers"]["b"]["heartbeat_age_s"] == pytest.approx(1.9)
    assert h.roll(69.0, 1.0, 0, 0, alive[:1], [])["workers"]["b"]["state"] == "lost"
    assert "b" not in h.roll(72.0, 1.0, 0, 0, alive[:1], [])["workers"]
