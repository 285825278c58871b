"""Where a small request's time goes in one worker: tokenize, then the forward pass eager or from a CUDA graph.

Run on the GPU host: python3 bench/probes/latency_probe.py MODEL_DIR [pairs-per-batch ...]
Prints p50/p99 over 200 batches of SQuAD pairs for each stage; "launch" is the CPU time
to issue an eager forward pass, "gpu wait" what is left for the GPU after it; "graph span"
is CUDA events around launching a graph batch on an idle GPU: its layout on the host, the
copies and the replay.
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
from rerankpool.worker.engines.torch_engine import TorchEngine
from rerankpool.worker.policy import PACKED_POLICY
from rerankpool.worker.tokenize import PairTokenizer

path = Path(sys.argv[1])
sizes = [int(x) for x in sys.argv[2:]] or [8, 32]
engine = TorchEngine(EngineConfig(path, "torch", "cuda", "float16"))
tok = PairTokenizer(path / "tokenizer.json")
pairs = pair_stream(load_squad(), 8000)
print("attention:", engine.packed_model.attention, "| CUDA graphs:", engine.graphs is not None,
      "| tokenizer:", tok.backend)


def ms(samples):
    return f"p50 {statistics.median(samples) * 1e3:.2f} p99 {np.percentile(samples, 99) * 1e3:.2f} ms"


for n in sizes:
    stages = {k: [] for k in ("tokenize", "eager launch", "eager gpu wait", "eager total", "graph total", "graph span")}
    first, last = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for start in range(0, min(len(pairs), 200 * n), n):
        group = pairs[start : start + n]
        t0 = time.perf_counter()
        (chunk,) = encode_pairs(tok, group, PACKED_POLICY).chunks
        t1 = time.perf_counter()
        out = engine.packed_model(engine.packed_model.inputs(chunk.input_ids, chunk.token_type_ids, chunk.lengths))
        t2 = time.perf_counter()
        eager = engine.collect(engine._in_flight(out))
        t3 = time.perf_counter()
        first.record()
        pending = engine.launch(chunk)
        last.record()
        graphed = engine.collect(pending)
        t4 = time.perf_counter()
        for key, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t3 - t1, t4 - t3, first.elapsed_time(last) / 1e3)):
            stages[key].append(value)
        assert np.abs(eager - graphed).max() < 0.05
    print(f"{n} pairs ({chunk.input_ids.size} tokens in the last):",
          "; ".join(f"{k} {ms(v)}" for k, v in stages.items()))
