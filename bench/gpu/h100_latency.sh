#!/usr/bin/env bash
# H100 host, one device call: what flash-tokenizer changes (A/B against tokenizers alone), low-load latency of a lone
# 32-pair request with and without idle workers sharing it (--split-min), the null engine (no model: broker, wire,
# tokenization), 8 workers x 4 threads, the small-batch latency probe and the stage profile; first the GPU-only tests.
set -uo pipefail
source bench/gpu/setup.sh
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/unit/test_engines_parity.py -k "cuda or packed or graph" 2>&1 \
  | tail -3 | tee $R/gpu-tests.txt
OMP_NUM_THREADS=8 RAYON_NUM_THREADS=8 timeout 100 python3 bench/gpu/latency_probe.py /tmp/l6 8 16 32 2>&1 | grep -v Warn \
  | tee $R/latency-probe-l6.txt
L6="--model /tmp/l6 --device cuda --engine torch:float16 --batch 32"
for s in 0 16; do
  T=90 run --out $R/h100-l6-flash-split$s $L6 --workers 4 --concurrency 1 --pairs 8000 \
      --broker-args "$BROKER --split-min $s" --worker-args "--no-device-process --threads 8" \
      --title "H100: L6 stand-in, one client, --split-min $s" --description "32-pair requests at concurrency 1"
done
T=110 run --out $R/h100-l6-tokenizers $L6 --workers 4 --concurrency 1,128 --pairs 24000 --broker-args "$BROKER" \
    --worker-args "--no-device-process --threads 8 --no-fast-tokenizer" --title "H100: L6 stand-in, tokenizers only (A/B)" \
    --description "as h100-l6-flash-ab with --no-fast-tokenizer, on the same host"
T=110 run --out $R/h100-l6-flash-ab $L6 --workers 4 --concurrency 1,128 --pairs 24000 --broker-args "$BROKER" \
    --worker-args "--no-device-process --threads 8" --title "H100: L6 stand-in, flash-tokenizer (A/B)" \
    --description "4 workers x 8 threads; the A/B partner of h100-l6-tokenizers"
T=110 run --out $R/h100-l6-flash-8w $L6 --workers 8 --concurrency 1,128 --pairs 24000 --broker-args "$BROKER" \
    --worker-args "--no-device-process --threads 4" --title "H100: L6 stand-in, 8 workers x 4 threads" --description "flash-tokenizer"
T=90 run --out $R/h100-null-flash --model /tmp/l6 --device cuda --engine null --workers 4 --batch 32 \
    --concurrency 1,128 --pairs 24000 --broker-args "$BROKER" --worker-args "--no-device-process --threads 8" \
    --title "H100 host: the pool without a model (null engine), flash-tokenizer" \
    --description "tokenization, broker, wire and clients only: what the pool costs around the model"
timeout 80 python3 -m rerankpool.bench.profile --model /tmp/l6 --device cuda --dtype float16 --batch 256 \
    --pairs 8000 --threads 8 --processes 1,4 2>&1 | grep '^{' | tee $R/h100-profile-flash.jsonl | cut -c1-400
for n in h100-l6-flash-split0 h100-l6-flash-split16 h100-l6-tokenizers h100-l6-flash-ab h100-l6-flash-8w h100-null-flash; do
  echo "## $n"; sed -n '/## Results Summary/,/^_Latencies/p' $R/$n/$n.md | grep "^|"; done
