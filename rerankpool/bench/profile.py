"""Where a worker's time goes, stage by stage, without the broker: ``python -m rerankpool.bench.profile``.

Runs the worker's own pieces (``PairTokenizer``, the engine, the two-thread ``Pipeline``)
on the sweep's pairs and prints pairs/s for each stage alone, for the pipeline, and for
P pipelines in P processes sharing the device. Comparing these with the pool's figures
shows whether the tokenizer, the forward pass, the GIL, the device or the broker limits.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import threading
import time
from pathlib import Path

import numpy as np

from rerankpool.bench.ceilings import worker_batches
from rerankpool.bench.children import collect


def profile_stages(model_path: str, pairs, device: str, dtype: str, batch: int, threads: int | None,
                   switch_interval_s: float | None = None) -> dict:
    """Tokenize alone, forward alone, then both through the worker's pipeline threads."""
    from rerankpool.worker.supervisor import thread_env

    os.environ.update(thread_env(threads, device))
    if switch_interval_s:
        import sys

        sys.setswitchinterval(switch_interval_s)
    import zmq

    from rerankpool import protocol as P
    from rerankpool.worker.engines.base import EngineConfig, run_batch
    from rerankpool.worker.config import WorkerConfig
    from rerankpool.worker.engines.torch_engine import TorchEngine
    from rerankpool.worker.pipeline import Pipeline
    from rerankpool.worker.tokenize import PairTokenizer

    path = Path(model_path)
    tok = PairTokenizer(path / "tokenizer.json", threads=threads)
    engine = TorchEngine(EngineConfig(path, "torch", device, dtype))
    policy = WorkerConfig(device=device).policy(packed=engine.packed)
    batches = list(worker_batches(pairs, batch))
    out: dict = {"pid": os.getpid(), "batch": batch, "pairs": len(pairs)}

    start = time.perf_counter()
    encoded = [tok.encode(q, i, d, policy) for q, i, d in batches]
    out["tokenize_pairs_per_s"] = len(pairs) / (time.perf_counter() - start)
    out["tokenizer"] = tok.backend
    real, padded = sum(e.real_tokens for e in encoded), sum(e.padded_tokens for e in encoded)
    out["padding_waste_pct"] = P.BatchTimings(len(pairs), 0.0, 0.0, real, padded).padding_waste_pct
    out["chunks_per_batch"] = float(np.mean([len(e.chunks) for e in encoded]))
    for e in encoded:  # warm every shape
        run_batch(engine, e)
    sync = (lambda: __import__("torch").cuda.synchronize()) if device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    for e in encoded:
        run_batch(engine, e)
    sync()
    out["forward_pairs_per_s"] = len(pairs) / (time.perf_counter() - start)

    def forward_all() -> None:
        for e in encoded:
            run_batch(engine, e)
        sync()

    start = time.perf_counter()
    thread = threading.Thread(target=forward_all)
    thread.start()
    thread.join()
    out["forward_in_thread_pairs_per_s"] = len(pairs) / (time.perf_counter() - start)
    start = time.perf_counter()
    for q, i, d in batches:  # one thread, tokenize then forward, batch after batch
        run_batch(engine, tok.encode(q, i, d, policy))
    sync()
    out["interleaved_pairs_per_s"] = len(pairs) / (time.perf_counter() - start)

    ctx = zmq.Context()
    pipeline = Pipeline(ctx, tok, engine, policy)
    tokenize_ms, inference_ms = [], []

    def feed_and_collect() -> None:  # plays the worker's socket thread
        for n, (q, i, d) in enumerate(batches):
            pipeline.submit(P.BatchMessage(n, q, i, d))
        while pipeline.pending:
            pipeline.socket.poll()
            for frames in pipeline.collect():
                header = P.unpack(frames)
                tokenize_ms.append(header["timings"]["tokenize_ms"])
                inference_ms.append(header["timings"]["inference_ms"])
        pipeline.stop()

    start = time.perf_counter()
    pipeline.start()
    feeder = threading.Thread(target=feed_and_collect)
    feeder.start()
    pipeline.run_forward()
    feeder.join()
    out["pipeline_pairs_per_s"] = len(pairs) / (time.perf_counter() - start)
    out["pipeline_tokenize_ms_p50"] = float(np.median(tokenize_ms))
    out["pipeline_inference_ms_p50"] = float(np.median(inference_ms))
    pipeline.close()
    ctx.term()
    return out


def _child(args, pairs, queue, barrier) -> None:
    barrier.wait()
    queue.put(profile_stages(args.model, pairs, args.device, args.dtype, args.batch, args.threads,
                             args.switch_interval_s))


def main(argv: list[str] | None = None) -> int:
    from rerankpool.bench.datasets import load_squad, pair_stream
    from rerankpool.models import resolve_model

    parser = argparse.ArgumentParser(prog="python -m rerankpool.bench.profile", description=__doc__)
    parser.add_argument("--model", default="ms-marco-MiniLM-L-12-v2")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=None, help="tokenizer threads per process")
    parser.add_argument("--processes", default="1", help="comma-separated process counts sharing the device")
    parser.add_argument("--switch-interval-s", type=float, default=None, help="sys.setswitchinterval for the run")
    args = parser.parse_args(argv)
    args.model = str(resolve_model(args.model).path)
    pairs = pair_stream(load_squad(), args.pairs)
    spawn = mp.get_context("spawn")
    for n in (int(x) for x in args.processes.split(",")):
        queue, barrier = spawn.Queue(), spawn.Barrier(n)
        procs = [spawn.Process(target=_child, args=(args, pairs, queue, barrier), name=f"profile-{i}")
                 for i in range(n)]
        for p in procs:
            p.start()
        results = collect(queue, procs, n)
        total = {k: sum(r[k] for r in results) for k in results[0] if k.endswith("pairs_per_s")}
        print(json.dumps({"processes": n, "threads": args.threads, "total": total, "each": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
