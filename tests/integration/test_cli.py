"""`rerankpool up`, `rerank`, `stats` and `models` as a user runs them from the shell."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest


def rp(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rerankpool", *args], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def read_until(proc: subprocess.Popen, marker: str, timeout_s: float = 180) -> list[str]:
    """Read the process's log lines until one contains ``marker`` (or fail with the log)."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if marker in line:
            return lines
    proc.kill()
    raise AssertionError(f"{marker!r} never logged:\n" + "".join(lines[-40:]))


@pytest.mark.parametrize("extra", [[], ["--device-process"]], ids=["workers-run-the-model", "device-process"])
def test_up_serves_then_shuts_down_cleanly_on_ctrl_c(tmp_path, extra):
    frontend = f"ipc://{tmp_path}/fe"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rerankpool", "up", "--model", "tiny-bert", "--workers", "2",
         "--frontend", frontend, "--backend", f"ipc://{tmp_path}/be", *extra],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )
    try:
        ready = read_until(proc, "rerankpool ready")
        assert "2 worker(s) serving tiny-bert" in ready[-1]
        out = rp("rerank", "--connect", frontend, "--top-k", "2", "river city", "a city on a river", "music", "war")
        assert out.returncode == 0, out.stderr
        lines = out.stdout.strip().splitlines()
        assert len(lines) == 2 and all("[" in line for line in lines)
        stats = rp("stats", "--connect", frontend, "--json")
        assert '"pairs_scored": 3' in stats.stdout
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[1]
        assert proc.returncode == 0, rest
        assert rest.count("finished its batches; goodbye") == 2 and "stopped" in rest
        if extra:
            assert "device process stopped" in rest
    finally:
        if proc.poll() is None:
            proc.kill()


def test_up_serves_several_models_the_first_being_the_default(tmp_path):
    """``up --model A --model B,workers=1 -n 2``: both served, A the default; `rerank --model` picks one."""
    from rerankpool.models import build_tiny_bert

    other = str(build_tiny_bert(tmp_path / "seed1", seed=1))
    frontend = f"ipc://{tmp_path}/fe"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rerankpool", "up", "--model", f"{other},workers=1", "--model", "tiny-bert",
         "--workers", "2", "--frontend", frontend, "--backend", f"ipc://{tmp_path}/be"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )
    try:
        ready = read_until(proc, "rerankpool ready")
        assert f"3 worker(s) serving {other}, tiny-bert" in ready[-1]
        listed = rp("models", "--connect", frontend)
        assert listed.returncode == 0, listed.stderr
        assert f"{other} (default): 1 live worker(s)" in listed.stdout
        assert "tiny-bert: 2 live worker(s)" in listed.stdout
        picked = {m: rp("rerank", "--connect", frontend, *(["--model", m] if m else []), "river city", "a city")
                  for m in (None, other, "tiny-bert")}
        assert all(out.returncode == 0 for out in picked.values())
        assert picked[None].stdout == picked[other].stdout != picked["tiny-bert"].stdout  # the default is the first
        unknown = rp("rerank", "--connect", frontend, "--model", "nope", "q", "d")
        assert unknown.returncode != 0 and "unknown_model" in unknown.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


def test_up_with_a_bad_model_exits_with_a_clear_error(tmp_path):
    out = rp("up", "--model", str(tmp_path / "no-such-model"), "--frontend", f"ipc://{tmp_path}/fe",
             "--backend", f"ipc://{tmp_path}/be")
    assert out.returncode == 1
    assert "could not start" in out.stderr


@pytest.mark.parametrize("args", [["models"], ["--help"], ["up", "--help"], ["worker", "--help"]])
def test_help_and_models_list(args):
    out = rp(*args)
    assert out.returncode == 0, out.stderr
    if args == ["models"]:
        assert "ms-marco-MiniLM-L-12-v2 (default)" in out.stdout
        assert "stand-in" in out.stdout.lower() or "standin" in out.stdout.lower()


def test_bench_writes_a_report_with_baseline_and_ceilings(tmp_path):
    """A small sweep as a user runs it: real pool, CrossEncoder.predict and the ceilings in the same run."""
    import json

    out = tmp_path / "tiny"
    done = rp("--log-level", "WARNING", "bench", "--out", str(out), "--model", "tiny-bert", "--batch", "8",
              "--concurrency", "1,4", "--pairs", "64", "--baseline", "--ceilings", "--load-processes", "2",
              "--broker-args=--bucket-edges 64,512 --split-min 4", "--worker-args=--threads 1", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "tiny.json").read_text())
    names = [b["name"] for b in result["baselines"]]
    assert names[0] == "CrossEncoder.predict(batch_size=32)"
    assert "tokenizer ceiling" in names and any(n.startswith("compute ceiling (float32") for n in names)
    assert "tokenizer ceiling (pool: flash-tokenizer+tokenizers)" in names  # the workers' own tokenizer
    assert [c["concurrency"] for c in result["configs"]] == [1, 4]
    assert all(c["pairs"] == 64 for c in result["configs"])  # every pair came back scored
    assert result["batching"]["split_min"] == 4 and result["batching"]["bucket_edges"] == [64, 512]
    report = (out / "tiny.md").read_text()
    assert "vs `CrossEncoder.predict(batch_size=32)`" in report and "split_min=4" in report
    assert "| Worker flags | `--threads 1` |" in report


def test_profile_runs_the_stages_alone_and_as_the_pipeline():
    """``python -m rerankpool.bench.profile``: each stage alone, then the worker's two-thread pipeline."""
    import json

    out = subprocess.run([sys.executable, "-m", "rerankpool.bench.profile", "--model", "tiny-bert", "--pairs", "64",
                          "--batch", "16", "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (each,) = json.loads(out.stdout.strip().splitlines()[-1])["each"]
    assert each["pairs"] == 64 and each["pipeline_pairs_per_s"] > 0
    assert each["pipeline_tokenize_ms_p50"] > 0 and each["pipeline_inference_ms_p50"] > 0


def test_rerank_against_an_address_where_nothing_listens_says_so_at_once(tmp_path):
    """Not after two 30 s timeouts: the connection is refused, so no broker runs there."""
    out = rp("rerank", "--connect", f"ipc://{tmp_path}/nobody", "q", "d", timeout=20)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "nothing listens at" in out.stderr and "start `rerankpool broker`" in out.stderr
