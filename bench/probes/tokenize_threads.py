"""How long a lone request's half (16 SQuAD pairs) takes to tokenize, by OpenMP threads.

Run on the GPU host: python3 bench/probes/tokenize_threads.py TOKENIZER_JSON [pairs ...]
Sets the thread count of flash-tokenizer's own libgomp before each batch.
"""

import ctypes
import glob
import os
import statistics
import sys
import time
from pathlib import Path

import flash_tokenizer

from rerankpool.bench.datasets import load_squad, rerank_workload
from rerankpool.worker.policy import PACKED_POLICY
from rerankpool.worker.tokenize import PairTokenizer

tok = PairTokenizer(Path(sys.argv[1]), threads=8)
(gomp,) = glob.glob(os.path.join(os.path.dirname(flash_tokenizer.__file__), "..", "flash_tokenizer.libs", "libgomp*"))
omp = ctypes.CDLL(gomp)
for n in [int(x) for x in sys.argv[2:]] or [16]:
    items = rerank_workload(load_squad(), 400, n)
    for threads in (1, 2, 4, 8, 16):
        omp.omp_set_num_threads(threads)
        tok._words._threads = threads
        tok._words._parallel = threads > 1
        ms = []
        for it in items:
            t = time.perf_counter()
            tok.encode([it.query], [0] * len(it.docs), it.docs, PACKED_POLICY)
            ms.append(1000 * (time.perf_counter() - t))
        ms = sorted(ms[20:])
        print(f"{n} pairs, {threads:2d} threads: median {statistics.median(ms):.3f} ms, "
              f"p90 {ms[int(.9 * len(ms))]:.3f}, p99 {ms[int(.99 * len(ms))]:.3f}")
