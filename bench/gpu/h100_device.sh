#!/usr/bin/env bash
# H100: the pool with --device-process (one process runs the model; the workers only tokenize) against the
# same pool without it, with CrossEncoder.predict and the ceilings in the same runs. Two parts, one device call
# each: `bash bench/gpu/h100_device.sh 1` (L6 SQuAD, A/B, L6 synthetic), `... 2` (L12, latency with one worker per request, 8 workers).
set -uo pipefail
source bench/gpu/setup.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $R/host.txt; nproc | tee -a $R/host.txt
python3 -c "import torch, transformers, sentence_transformers as st; print(torch.__version__, transformers.__version__, st.__version__)" | tee -a $R/host.txt
POOL="--device cuda --engine torch:float16 --workers 4 --batch 32"
DP="--threads 8 --device-process"
if [ "${1:-1}" = 1 ]; then
  names="h100-l6-device h100-l6-nodevice h100-l6-synth-device"
  T=200 run --out $R/h100-l6-device --model /tmp/l6 $POOL --concurrency 1,64,128 --pairs 40000 \
      --baseline --ceilings --broker-args "$BROKER" --worker-args "$DP" \
      --title "H100: L6 stand-in, --device-process, SQuAD pairs" \
      --description "4 workers x 8 tokenizer threads feeding one device process (packed fp16, varlen attention)"
  T=100 run --out $R/h100-l6-nodevice --model /tmp/l6 $POOL --concurrency 1,128 --pairs 24000 \
      --broker-args "$BROKER" --worker-args "--threads 8" \
      --title "H100: L6 stand-in, each worker runs the model (A/B)" \
      --description "as h100-l6-device without --device-process, same host session"
  T=190 run --out $R/h100-l6-synth-device --model /tmp/l6 $POOL --concurrency 1,64,128 --pairs 60000 \
      --dataset synthetic --synthetic-words 30,60 --baseline --ceilings --broker-args "$BROKER" --worker-args "$DP" \
      --title "H100: L6 stand-in, --device-process, ~70-token synthetic pairs" \
      --description "as h100-l6-device, on synthetic pairs of ~70 tokens (the issue's shape)"
else
  names="h100-l12-device h100-l6-device-split0 h100-l6-device-8w h100-l6-synth-device-8w"
  T=200 run --out $R/h100-l12-device --model ms-marco-MiniLM-L-12-v2 $POOL --concurrency 1,64,128 --pairs 40000 \
      --baseline --ceilings --broker-args "$BROKER" --worker-args "$DP" \
      --title "H100: L12 (default, real), --device-process, SQuAD pairs" --description "as h100-l6-device, real 12-layer model"
  T=80 run --out $R/h100-l6-device-split0 --model /tmp/l6 $POOL --concurrency 1 --pairs 8000 \
      --broker-args "$BROKER --split-min 0" --worker-args "$DP" \
      --title "H100: L6 stand-in, --device-process, one client, --split-min 0" \
      --description "32-pair requests at concurrency 1, each taken whole by one worker"
  W8="--model /tmp/l6 --device cuda --engine torch:float16 --workers 8 --batch 32 --concurrency 128,256"
  T=100 run --out $R/h100-l6-device-8w $W8 --pairs 40000 --broker-args "$BROKER" \
      --worker-args "--threads 4 --device-process" \
      --title "H100: L6 stand-in, --device-process, 8 workers x 4 threads" --description "SQuAD pairs"
  T=100 run --out $R/h100-l6-synth-device-8w $W8 --pairs 60000 --dataset synthetic --synthetic-words 30,60 \
      --broker-args "$BROKER" --worker-args "--threads 4 --device-process" \
      --title "H100: L6 stand-in, --device-process, 8 workers x 4 threads, ~70-token synthetic pairs" \
      --description "as h100-l6-synth-device with 8 workers"
fi
for n in $names; do echo "## $n"
  sed -n '/## Results Summary/,/^_Latencies/p;/^| Config | Agg TP/,/^$/p' $R/$n/$n.md | grep "^|"; done
