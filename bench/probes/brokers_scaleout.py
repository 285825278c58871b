"""How aggregate pairs/s grows with brokers, and what a broker's SIGKILL costs the requests in flight.

Null workers (tokenizing, no model) serve every broker (``--connect be1,be2,...``), and load
processes send 20-pair requests through clients given every frontend, so the brokers and the
transport are the work. For 1, 2 and 4 brokers on this machine: the pairs/s of a fixed load.
Then, with 2 brokers, one is killed a second into a run: the latency of the requests sent
around the kill says how long a failover holds a request. Run from the repo root::

    python bench/probes/brokers_scaleout.py [--workers 4] [--pairs 100000] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from rerankpool.bench.datasets import load_squad, pair_stream
from rerankpool.bench.load import BenchRequest, run_load
from rerankpool.launch import wait_for_workers

FAST = ["--heartbeat-interval-s", "0.2", "--liveness", "3"]


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rerankpool", "--log-level", "ERROR", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start(folder: Path, brokers: int, workers: int) -> tuple[list[subprocess.Popen], list[str]]:
    fe = [f"ipc://{folder}/fe{i}" for i in range(brokers)]
    be = [f"ipc://{folder}/be{i}" for i in range(brokers)]
    procs = [spawn("broker", "--frontend", f, "--backend", b, "--max-queued-pairs", "10000000", *FAST)
             for f, b in zip(fe, be)]
    procs.append(spawn("worker", "--connect", ",".join(be), "-n", str(workers), "--engine", "null",
                       "--model", "tiny-bert", "--capacity", str(max(2, brokers)), *FAST))
    for f in fe:
        wait_for_workers(f, workers, 120.0)
    return procs, fe


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--load-processes", type=int, default=2)
    parser.add_argument("--out", default=None, help="also write the lines to this file")
    args = parser.parse_args()
    pairs = pair_stream(load_squad(), args.pairs)
    requests = [BenchRequest(tuple(pairs[i : i + 20])) for i in range(0, len(pairs), 20)]
    lines = [f"# {os.cpu_count()} cores; null workers x {args.workers}, each serving every broker; "
             f"{args.pairs} SQuAD pairs in 20-pair requests from {args.clients} clients in "
             f"{args.load_processes} processes"]
    for brokers in (1, 2, 4):
        with tempfile.TemporaryDirectory() as folder:
            procs, fe = start(Path(folder), brokers, args.workers)
            try:
                run_load(",".join(fe), requests[:50], 8)  # warm-up
                wall, samples = run_load(",".join(fe), requests, args.clients, processes=args.load_processes)
            finally:
                stop(procs)
        ok = sum(s.pairs for s in samples if s.ok)
        lines.append(f"{brokers} broker(s): {ok / wall:.1f} pairs/s, {sum(not s.ok for s in samples)} failed")
        print(lines[-1], flush=True)
    with tempfile.TemporaryDirectory() as folder:  # the failover: 2 brokers, one killed a second in
        procs, fe = start(Path(folder), 2, args.workers)
        killed_at: list[float] = []

        def kill() -> None:
            time.sleep(1.0)  # the benchmark's schedule: the kill a second into the run
            procs[0].send_signal(signal.SIGKILL)
            killed_at.append(time.monotonic())

        try:
            threading.Thread(target=kill, daemon=True).start()
            _, samples = run_load(",".join(fe), requests[: len(requests) // 2], args.clients, timeout_s=60.0)
        finally:
            stop(procs)
    around = [s.latency_ms for s in samples if killed_at and abs(s.start_s - killed_at[0]) < 1.0]
    rest = [s.latency_ms for s in samples if killed_at and abs(s.start_s - killed_at[0]) >= 1.0]
    lines.append(f"failover (2 brokers, one SIGKILLed): {len(samples)} requests, {sum(not s.ok for s in samples)} "
                 f"failed; sent within 1 s of the kill: {len(around)}, latency p50 {np.percentile(around, 50):.1f} ms, "
                 f"p99 {np.percentile(around, 99):.1f} ms, max {max(around):.1f} ms; the others p99 "
                 f"{np.percentile(rest, 99):.1f} ms")
    print(lines[-1])
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
