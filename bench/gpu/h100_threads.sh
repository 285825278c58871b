#!/usr/bin/env bash
# Low-load latency against tokenizer threads per worker: 8 (the sweeps) or 16 (the CLI default on a GPU).
set -uo pipefail
source bench/gpu/setup.sh
BROKER="--max-batch 256 --max-batch-tokens 131072 --batch-timeout-ms 5 --bucket-edges 512"
for t in 16 8; do
  T=120 run --out $R/h100-l6-threads$t --model /tmp/l6 --device cuda --engine torch:float16 --workers 4 --batch 32 \
      --concurrency 1,128 --pairs 12000 --broker-args "$BROKER" --worker-args "--threads $t" \
      --title "H100: L6 stand-in, $t tokenizer threads a worker" --description "32-pair requests, one client, then 128"
done
for n in h100-l6-threads16 h100-l6-threads8; do
  echo "## $n"; sed -n '/## Results Summary/,/^_Latencies/p' $R/$n/$n.md | grep "^|"; done
