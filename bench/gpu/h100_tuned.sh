#!/usr/bin/env bash
# GPU sweep with GPU-tuned batching (longer batch timeout, coarse buckets, 8 tokenizer threads a worker).
set -uo pipefail
source bench/gpu/setup.sh
for m in l6 l12; do
  model=/tmp/l6; [ $m = l12 ] && model=ms-marco-MiniLM-L-12-v2
  T=240 run --out $R/h100-$m-tuned --model $model --device cuda --engine torch:float16 --workers 4 --batch 32,128 \
      --concurrency 1,64 --pairs 20000 --baseline --ceilings --broker-args "$GPU_BROKER" --worker-args "--threads 8" \
      --title "H100: $m, torch fp16, GPU-tuned batching" \
      --description "4 workers x 8 tokenizer threads; batch timeout 10 ms, buckets 64..512; vs CrossEncoder.predict and the two ceilings"
done
