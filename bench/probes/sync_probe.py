"""Where a small graph-replayed forward pass spends its ~1 ms when the GPU works 0.13 ms.

Run on the GPU host: python3 bench/probes/sync_probe.py MODEL_DIR [pairs]
Times the worker's graph path (pageable copies, a spinning wait) against the same graph
with pinned staging buffers and asynchronous copies, with a blocking (sleeping) or a
spinning event wait. p50/p99 over 300 batches of SQuAD pairs. (``bench/results/h100-sync-probe.txt``,
in git history at edd338e, was measured when the worker's wait could still be swapped, so it also times the
worker path with a sleeping wait.)
"""

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rerankpool.bench.ceilings import encode_pairs
from rerankpool.bench.datasets import load_squad, pair_stream
from rerankpool.worker.engines.base import EngineConfig
from rerankpool.worker.engines.packed_encoder import graph_layout
from rerankpool.worker.engines.torch_engine import TorchEngine
from rerankpool.worker.policy import PACKED_POLICY
from rerankpool.worker.tokenize import PairTokenizer

path = Path(sys.argv[1])
n = int(sys.argv[2]) if len(sys.argv) > 2 else 16
engine = TorchEngine(EngineConfig(path, "torch", "cuda", "float16"))
tok = PairTokenizer(path / "tokenizer.json")
pairs = pair_stream(load_squad(), 300 * n)
chunks = [encode_pairs(tok, pairs[i : i + n], PACKED_POLICY).chunks[0] for i in range(0, len(pairs), n)]
graphs = engine.graphs
pinned: dict[tuple[int, int], tuple] = {}


def pinned_path(chunk, event):
    shape = graphs.shape_for(chunk.input_ids.size, len(chunk.lengths))
    graph, host_ids, cu, out = graphs._graphs[shape]
    capacity = shape[0]
    if shape not in pinned:
        pinned[shape] = (torch.empty(host_ids.shape, dtype=torch.int64).pin_memory(),
                            torch.empty(cu.shape, dtype=torch.int32).pin_memory(),
                            torch.empty(out.shape, dtype=out.dtype).pin_memory())
    ids_p, cu_p, out_p = pinned[shape]
    ids, cu_host = graph_layout(chunk.input_ids, chunk.token_type_ids, chunk.lengths, capacity, shape[1])
    ids_p.numpy()[:] = ids
    cu_p.numpy()[:] = cu_host
    host_ids.copy_(ids_p, non_blocking=True)
    cu.copy_(cu_p, non_blocking=True)
    graph.replay()
    out_p.copy_(out, non_blocking=True)
    event.record()
    event.synchronize()
    return out_p[: len(chunk.lengths)].float().numpy()


def worker_path(chunk, event):
    return engine.forward(chunk)  # the engine picks its own wait: spinning, for graph batches


def ms(samples):
    return f"p50 {statistics.median(samples) * 1e3:.3f} p99 {np.percentile(samples, 99) * 1e3:.3f} ms"


reference = [worker_path(c, None) for c in chunks[:20]]
blocking, spin = ("blocking", torch.cuda.Event(blocking=True)), ("spin", torch.cuda.Event())
for name, run, waits in (("worker path", worker_path, [spin]), ("pinned, async copies", pinned_path, [blocking, spin])):
    for wait, event in waits:
        for c, ref in zip(chunks[:20], reference):
            assert np.abs(run(c, event) - ref).max() < 1e-3
        times = []
        for c in chunks:
            t = time.perf_counter()
            run(c, event)
            times.append(time.perf_counter() - t)
        print(f"{n} pairs, {name}, {wait} wait: {ms(times)}")
