#!/usr/bin/env bash
# Two-GPU scaling where the GPUs, not the host's cores, are the limit: long pairs (~450 tokens), L12.
set -uo pipefail
source bench/gpu/setup.sh
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
common="--model ms-marco-MiniLM-L-12-v2 --device cuda --engine torch:float16 --batch 32 --concurrency 128,256 --pairs 24000 --dataset synthetic --synthetic-words 300,380 --workers 8 --broker-args"
T=220 run --out $R/h200-l12-long-1gpu $common "$BROKER" --worker-args "--no-device-process --threads 8 --devices 0" --ceilings \
    --title "2x H200 host: L12, long pairs, ONE GPU" --description "8 workers on cuda:0; synthetic pairs of 300-380 words (~450 tokens)"
T=220 run --out $R/h200-l12-long-2gpu $common "$BROKER" --worker-args "--no-device-process --threads 8 --devices 0,1" \
    --title "2x H200 host: L12, long pairs, TWO GPUs" --description "8 workers over cuda:0 and cuda:1; the same pairs"
for n in h200-l12-long-1gpu h200-l12-long-2gpu; do
  echo "## $n"; sed -n '/## Results Summary/,/^_Latencies/p;/^| Config | Agg TP/,/^$/p' $R/$n/$n.md | grep "^|"; done
