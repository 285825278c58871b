#!/usr/bin/env bash
# H100, packed forward pass, flash-tokenizer: L6 (SQuAD and ~70-token synthetic pairs) and L12 sweeps against
# CrossEncoder.predict and the ceilings (tokenizers' encode_batch, the workers' own tokenizer in 4 processes,
# the forward pass padded and packed, the compute rate), all in the same run.
set -uo pipefail
source bench/gpu/setup.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $R/host.txt; nproc | tee -a $R/host.txt
python3 -c "import torch, transformers, sentence_transformers as st; print(torch.__version__, transformers.__version__, st.__version__)" | tee -a $R/host.txt
POOL="--device cuda --engine torch:float16 --workers 4"
T=190 run --out $R/h100-l6-flash --model /tmp/l6 $POOL --batch 32 --concurrency 1,64,128 --pairs 40000 \
    --baseline --ceilings --broker-args "$BROKER" --worker-args "--no-device-process --threads 8" \
    --title "H100: L6 stand-in, packed fp16, flash-tokenizer, SQuAD pairs" \
    --description "4 workers x 8 tokenizer threads, packed tokens + varlen attention; one length bucket"
T=170 run --out $R/h100-l6-synth-flash --model /tmp/l6 $POOL --batch 32 --concurrency 1,64,128 --pairs 60000 \
    --dataset synthetic --synthetic-words 30,60 --baseline --ceilings --broker-args "$BROKER" --worker-args "--no-device-process --threads 8" \
    --title "H100: L6 stand-in, packed fp16, flash-tokenizer, ~70-token synthetic pairs" \
    --description "as h100-l6-flash, on synthetic pairs of ~70 tokens (the issue's shape)"
T=190 run --out $R/h100-l12-flash --model ms-marco-MiniLM-L-12-v2 $POOL --batch 32 --concurrency 1,64,128 \
    --pairs 40000 --baseline --ceilings --broker-args "$BROKER" --worker-args "--no-device-process --threads 8" \
    --title "H100: L12 (default, real), packed fp16, flash-tokenizer, SQuAD pairs" \
    --description "as h100-l6-flash, real 12-layer model"
for n in h100-l6-flash h100-l6-synth-flash h100-l12-flash; do
  sed -n '/## Results Summary/,/^_Latencies/p;/^| Config | Agg TP/,/^$/p' $R/$n/$n.md | grep "^|"; done
