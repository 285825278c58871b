#!/usr/bin/env bash
# Low-load latency on the H100 host: a lone 32-pair request with and without idle workers
# sharing it (--split-min), and the null engine (no model: broker, wire, tokenization).
set -uo pipefail
source bench/gpu/setup.sh
BROKER="--max-batch 256 --max-batch-tokens 131072 --batch-timeout-ms 5 --bucket-edges 512"
for s in 0 8 16; do
  T=120 run --out $R/h100-l6-split$s --model /tmp/l6 --device cuda --engine torch:float16 --workers 4 --batch 32 \
      --concurrency 1 --pairs 8000 --broker-args "$BROKER --split-min $s" --worker-args "--threads 8" \
      --title "H100: L6 stand-in, one client, --split-min $s" --description "32-pair requests at concurrency 1"
done
T=150 run --out $R/h100-null-packed --model /tmp/l6 --device cuda --engine null --workers 4 --batch 32 \
    --concurrency 1,128 --pairs 30000 --broker-args "$BROKER" --worker-args "--threads 8" \
    --title "H100 host: the pool without a model (null engine)" \
    --description "tokenization, broker, wire and clients only: what the pool costs around the model"
for n in h100-l6-split0 h100-l6-split8 h100-l6-split16 h100-null-packed; do
  echo "## $n"; sed -n '/## Results Summary/,/^_Latencies/p' $R/$n/$n.md | grep "^|"; done
