"""Do two small graph passes overlap on two CUDA streams? (a lone request's two halves)

Run on the GPU host: python3 bench/probes/lanes_probe.py MODEL_DIR [pairs-per-half ...]
A second set of graphs, in its own memory pool, replays on a second stream. For each size,
half A is launched, then half B after a host delay (the gap between the halves' arrivals),
and the time from A's launch until both are done is taken: B behind A on one stream, or B
on the second stream. Also a single graph of both halves, for comparison.
"""

import statistics
import sys
import time
from pathlib import Path

import torch

from rerankpool.bench.ceilings import encode_pairs
from rerankpool.bench.datasets import load_squad, pair_stream
from rerankpool.worker.engines.base import EngineConfig
from rerankpool.worker.engines.packed_encoder import GraphedPackedEncoder
from rerankpool.worker.engines.torch_engine import TorchEngine
from rerankpool.worker.policy import PACKED_POLICY
from rerankpool.worker.tokenize import PairTokenizer

REPS = 200
path = Path(sys.argv[1])
sizes = [int(x) for x in sys.argv[2:]] or [16]
engine = TorchEngine(EngineConfig(path, "torch", "cuda", "float16"))
start = time.perf_counter()
second = GraphedPackedEncoder(engine.packed_model, 512)
print(f"second graph set captured in {time.perf_counter() - start:.1f} s; "
      f"reserved {torch.cuda.memory_reserved() / 2**20:.0f} MiB")
tok = PairTokenizer(path / "tokenizer.json")
pairs = pair_stream(load_squad(), 4000)
s1, s2 = torch.cuda.Stream(), torch.cuda.Stream()


def spin(us: float) -> None:
    end = time.perf_counter() + us / 1e6
    while time.perf_counter() < end:
        pass


def replay(graphs, chunk, stream):
    with torch.cuda.stream(stream):
        shape = graphs.shape_for(chunk.input_ids.size, len(chunk.lengths))
        out = graphs(chunk.input_ids, chunk.token_type_ids, chunk.lengths, shape)
        done = torch.cuda.Event()
        done.record()
    return out, done


def halves_run(first, second, offset_us: float) -> None:
    """``first`` (graphs, chunk, stream) if any, then ``second`` after ``offset_us`` of host time."""
    if first is not None:
        replay(*first)
    spin(offset_us)
    replay(*second)


def timed(fn, *args) -> float:
    torch.cuda.synchronize()
    t = time.perf_counter()
    fn(*args)
    torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - t)


for n in sizes:
    encode = lambda part: encode_pairs(tok, part, PACKED_POLICY).chunks[0]  # noqa: E731
    halves = [(encode(pairs[2 * i * n:(2 * i + 1) * n]), encode(pairs[(2 * i + 1) * n:(2 * i + 2) * n]))
              for i in range(30)]
    whole = [encode(pairs[2 * i * n:(2 * i + 2) * n]) for i in range(30)]
    a, b = halves[0]
    # A graph's output is its own static buffer: copy it out before that graph replays again.
    want = replay(engine.graphs, b, s1)[0]
    torch.cuda.synchronize()
    want = want.clone()
    got = replay(second, b, s2)[0]
    torch.cuda.synchronize()
    print(f"the second graph set agrees with the first: {torch.allclose(got, want, atol=1e-3)}")
    for offset in (0, 300):
        results = {"one stream": [], "two streams": [], "one graph of both": [], "half alone": []}
        for rep in range(REPS):
            a, b = halves[rep % len(halves)]
            results["one stream"].append(timed(halves_run, (engine.graphs, a, s1), (engine.graphs, b, s1), offset))
            results["two streams"].append(timed(halves_run, (engine.graphs, a, s1), (second, b, s2), offset))
            results["one graph of both"].append(timed(halves_run, None, (engine.graphs, whole[rep % 30], s1), offset))
            results["half alone"].append(timed(halves_run, None, (engine.graphs, a, s1), 0))
        tokens = statistics.median(c.input_ids.size for c, _ in halves)
        print(f"{path.name}, 2 x {n} pairs (~{tokens:.0f} tokens a half), B launched {offset} us after A, "
              f"median (p90) ms until both are done:")
        for name, ms in results.items():
            ms.sort()
            print(f"  {name:20s} {statistics.median(ms):6.3f} ({ms[int(0.9 * len(ms))]:.3f})")
