#!/usr/bin/env bash
# Two GPUs, more worker processes: is the 2-GPU rate limited by tokenizing processes or by the load generator?
set -uo pipefail
source bench/gpu/setup.sh
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
BROKER="--max-batch 256 --max-batch-tokens 131072 --batch-timeout-ms 5 --bucket-edges 512"
common="--model ms-marco-MiniLM-L-12-v2 --device cuda --engine torch:float16 --batch 32 --concurrency 256,512 --pairs 60000 --load-processes 8 --broker-args"
T=240 run --out $R/h200-l12-2gpu-12w $common "$BROKER" --workers 12 --worker-args "--threads 6 --devices 0,1" \
    --ceilings --title "2x H200 host: L12 on TWO GPUs, 12 workers" --description "12 workers x 6 tokenizer threads over cuda:0 and cuda:1; 8 load processes"
T=240 run --out $R/h200-l12-2gpu-16w $common "$BROKER" --workers 16 --worker-args "--threads 4 --devices 0,1" \
    --title "2x H200 host: L12 on TWO GPUs, 16 workers" --description "16 workers x 4 tokenizer threads over cuda:0 and cuda:1; 8 load processes"
for n in h200-l12-2gpu-12w h200-l12-2gpu-16w; do
  echo "## $n"; sed -n '/## Results Summary/,/^_Latencies/p;/^| Config | Agg TP/,/^$/p' $R/$n/$n.md | grep "^|"; done
