#!/usr/bin/env bash
# Small-batch latency breakdown on the GPU host (latency_probe.py): tokenizer threads, eager vs CUDA graph.
set -uo pipefail
source bench/gpu/setup.sh
for t in 8 16; do
  RAYON_NUM_THREADS=$t timeout 150 python3 bench/gpu/latency_probe.py /tmp/l6 8 32 2>&1 | grep -v Warn \
    | sed "s/^/[$t tokenizer threads] /" | tee -a $R/latency-probe-l6.txt
done
