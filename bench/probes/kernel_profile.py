"""Which GPU kernels a small packed forward pass spends its time in (the lone request's model time).

Run on the GPU host: python3 bench/probes/kernel_profile.py MODEL_DIR [pairs-per-batch ...] [--compile]
Profiles 50 eager packed passes of SQuAD pairs per size with torch.profiler and prints the
kernels by their summed GPU time, per pass, against a graph batch end to end (CUDA events around
``engine.forward``: the layout on the host, the copies, the replay and the wait).
"""

import sys
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from rerankpool.bench.ceilings import encode_pairs
from rerankpool.bench.datasets import load_squad, pair_stream
from rerankpool.worker.engines.base import EngineConfig
from rerankpool.worker.engines.torch_engine import TorchEngine
from rerankpool.worker.policy import PACKED_POLICY
from rerankpool.worker.tokenize import PairTokenizer

REPS = 50
path = Path(sys.argv[1])
sizes = [int(x) for x in sys.argv[2:] if x != "--compile"] or [16, 32]
engine = TorchEngine(EngineConfig(path, "torch", "cuda", "float16", compile="--compile" in sys.argv))
tok = PairTokenizer(path / "tokenizer.json")
pairs = pair_stream(load_squad(), 4000)
for n in sizes:
    (chunk,) = encode_pairs(tok, pairs[:n], PACKED_POLICY).chunks
    inputs = engine.packed_model.inputs(chunk.input_ids, chunk.token_type_ids, chunk.lengths)
    for _ in range(5):
        engine.packed_model(inputs)
        engine.forward(chunk)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(REPS):
            engine.packed_model(inputs)
        torch.cuda.synchronize()
    kernels = sorted(
        ((e.key, e.device_time_total / REPS, e.count // REPS) for e in prof.key_averages()
         if e.device_type == DeviceType.CUDA and e.device_time_total > 0),
        key=lambda k: -k[1],
    )
    total = sum(t for _, t, _ in kernels)
    first, last = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    first.record()
    for _ in range(REPS):
        engine.forward(chunk)
    last.record()
    torch.cuda.synchronize()
    print(f"{path.name}, {n} pairs, {chunk.input_ids.size} tokens: eager kernels {total / 1000:.3f} ms a pass; "
          f"graph batch end to end {first.elapsed_time(last) / REPS:.3f} ms a pass")
    for name, us, count in kernels[:14]:
        print(f"  {us:8.1f} us  {100 * us / total:5.1f} %  x{count:<3d} {name[:110]}")
