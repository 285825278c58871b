"""Does the host stall every process at once, with nothing of ours running? (the p99's bursts)

Run on the GPU host with no pool up: python3 bench/probes/stall_probe.py [processes] [seconds]
Each process repeats a fixed piece of CPU work (hashing 64 KiB, ~0.1 ms) and, between
pieces, a 1 ms sleep, and records when a piece or a wake-up took over 3x its median.
Slow moments are grouped into bursts (50 ms apart at least); a burst that slows most
processes at once, at a steady period, is the host's, since these processes share
nothing but the machine.
"""

import hashlib
import multiprocessing as mp
import statistics
import sys
import time

WORK = b"x" * 65536


def probe(seconds: float, out) -> None:
    work, wake = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.monotonic()
        hashlib.sha256(WORK).digest()
        work.append((t, time.monotonic() - t))
        t = time.monotonic()
        time.sleep(0.001)
        wake.append((t, time.monotonic() - t - 0.001))
    out.put((work, wake))


def bursts(times: list[float], gap: float = 0.05) -> list[tuple[float, int]]:
    """(start, slow moments) of each group of slow moments closer than ``gap`` to the last."""
    groups: list[list[float]] = []
    for t in sorted(times):
        if groups and t - groups[-1][-1] < gap:
            groups[-1].append(t)
        else:
            groups.append([t])
    return [(g[0], len(g)) for g in groups]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=probe, args=(seconds, out)) for _ in range(n)]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    start = min(r[0][0][0] for r in results)
    for kind, k in (("work (0.1 ms of hashing)", 0), ("wake-up after a 1 ms sleep", 1)):
        samples = [s for r in results for s in r[k]]
        ms = sorted(1000 * d for _, d in samples)
        limit = 3 * max(statistics.median(ms), 0.05 if k else 0.0)
        slow = [[t for t, d in r[k] if 1000 * d > limit] for r in results]
        groups = bursts([t for s in slow for t in s])
        big = [(t, sum(any(abs(u - t) < 0.1 for u in s) for s in slow)) for t, count in groups if count >= 3]
        print(f"{kind}: {len(ms)} samples from {n} processes; median {statistics.median(ms):.3f} ms, "
              f"p99 {ms[int(0.99 * len(ms))]:.3f}, max {ms[-1]:.2f}; over {limit:.2f} ms: "
              f"{sum(map(len, slow))} ({100 * sum(map(len, slow)) / len(ms):.2f} %)")
        print("  bursts (start s, processes slowed within 0.1 s):",
              ", ".join(f"{t - start:.2f} ({p}/{n})" for t, p in big[:40]))
        starts = [t for t, p in big if p > n // 2]
        if len(starts) > 2:
            gaps = [b - a for a, b in zip(starts, starts[1:])]
            print(f"  bursts that slowed most processes: {len(starts)}, "
                  f"median {statistics.median(gaps):.2f} s apart")


if __name__ == "__main__":
    main()
