"""The workers' tokenizer with and without flash-tokenizer, one thread, on SQuAD pairs.

python bench/probes/tokenizer_speed.py [pairs]  ->  pairs/s of ``PairTokenizer.encode`` (packed
chunks, broker-sized batches of 256, each batch's queries once), median of 5 passes each.
Run with one thread so the figure is per core: RAYON_NUM_THREADS=1 OMP_NUM_THREADS=1.
"""

import os
import platform
import statistics
import sys
import time

from rerankpool.bench.ceilings import worker_batches
from rerankpool.bench.datasets import load_squad, pair_stream
from rerankpool.models import DEFAULT_MODEL, resolve_model
from rerankpool.worker.policy import PACKED_POLICY
from rerankpool.worker.tokenize import PairTokenizer

n = int(sys.argv[1]) if len(sys.argv) > 1 else 8192
batches = list(worker_batches(pair_stream(load_squad(), n, seed=1), 256))
tokenizer_json = resolve_model(DEFAULT_MODEL).path / "tokenizer.json"
print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; threads "
      f"RAYON={os.environ.get('RAYON_NUM_THREADS')} OMP={os.environ.get('OMP_NUM_THREADS')}; {n} SQuAD pairs")
rates = {}
for fast in (False, True):
    tok = PairTokenizer(tokenizer_json, fast=fast, threads=1)
    tok.encode(*batches[0], PACKED_POLICY)
    passes = []
    for _ in range(5):
        start = time.perf_counter()
        for batch in batches:
            tok.encode(*batch, PACKED_POLICY)
        passes.append(n / (time.perf_counter() - start))
    rates[tok.backend] = statistics.median(passes)
    print(f"{tok.backend}: {rates[tok.backend]:,.0f} pairs/s (passes: {', '.join(f'{r:,.0f}' for r in passes)})")
print(f"ratio: {rates['flash-tokenizer+tokenizers'] / rates['tokenizers']:.2f}x")
