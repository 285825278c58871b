#!/usr/bin/env bash
# H100, packed forward pass: GPU parity tests, the small-batch latency probe, then L6 (SQuAD and ~70-token synthetic pairs) and
# L12 sweeps against CrossEncoder.predict and both ceilings, then the stage profile.
set -uo pipefail
source bench/gpu/setup.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $R/host.txt; nproc | tee -a $R/host.txt
python3 -c "import torch, transformers, sentence_transformers as st; print(torch.__version__, transformers.__version__, st.__version__)" | tee -a $R/host.txt
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/unit/test_engines_parity.py -k "cuda or packed or graph" 2>&1 \
  | tail -3 | tee $R/gpu-tests.txt
RAYON_NUM_THREADS=8 timeout 150 python3 bench/gpu/latency_probe.py /tmp/l6 8 32 2>&1 | grep -v Warn | tee $R/latency-probe-l6.txt
POOL="--device cuda --engine torch:float16 --workers 4"
BROKER="--max-batch 256 --max-batch-tokens 131072 --batch-timeout-ms 5 --bucket-edges 512"
T=200 run --out $R/h100-l6-packed --model /tmp/l6 $POOL --batch 32 --concurrency 1,64,128 --pairs 30000 \
    --baseline --ceilings --broker-args "$BROKER" --worker-args "--threads 8" \
    --title "H100: L6 stand-in, packed fp16, SQuAD pairs" \
    --description "4 workers x 8 tokenizer threads, packed tokens + varlen attention; one length bucket"
T=150 run --out $R/h100-l6-synth --model /tmp/l6 $POOL --batch 32 --concurrency 1,64,128 --pairs 40000 \
    --dataset synthetic --synthetic-words 30,60 --baseline --ceilings --broker-args "$BROKER" --worker-args "--threads 8" \
    --title "H100: L6 stand-in, packed fp16, ~70-token synthetic pairs" \
    --description "as h100-l6-packed, on synthetic pairs of ~70 tokens (the issue's shape)"
T=200 run --out $R/h100-l12-packed --model ms-marco-MiniLM-L-12-v2 $POOL --batch 32 --concurrency 1,64,128 \
    --pairs 30000 --baseline --ceilings --broker-args "$BROKER" --worker-args "--threads 8" \
    --title "H100: L12 (default, real), packed fp16, SQuAD pairs" --description "as h100-l6-packed, real 12-layer model"
timeout 100 python3 -m rerankpool.bench.profile --model /tmp/l6 --device cuda --dtype float16 --batch 256 \
    --pairs 8000 --threads 8 --processes 1,4 2>&1 | grep '^{' | tee $R/h100-profile-packed.jsonl | cut -c1-400
for n in h100-l6-packed h100-l6-synth h100-l12-packed; do
  sed -n '/## Results Summary/,/^_Latencies/p;/^| Config | Agg TP/,/^$/p' $R/$n/$n.md | grep "^|"; done
