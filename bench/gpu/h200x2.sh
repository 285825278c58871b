#!/usr/bin/env bash
# Two-GPU scaling on a host with two H200s: the same saturated load on one GPU, then on two.
# The real 12-layer model on SQuAD pairs, workers tokenizing with flash-tokenizer.
# `bash bench/gpu/h200x2.sh --device-process` runs the model in one device process per GPU (h200-l12-device-*).
set -uo pipefail
DP=${1:---no-device-process}  # the default on CUDA is a device process per GPU
tag=flash; [ "$DP" = "--device-process" ] && tag=device
source bench/gpu/setup.sh
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
nvidia-smi --query-gpu=name,memory.total --format=csv | tee $R/host.txt; nproc | tee -a $R/host.txt
common="--model ms-marco-MiniLM-L-12-v2 --device cuda --engine torch:float16 --batch 32 --concurrency 128,256 --pairs 60000 --broker-args"
T=230 run --out $R/h200-l12-$tag-1gpu $common "$BROKER" --workers 8 --worker-args "--threads 4 --devices 0 $DP" \
    --ceilings --title "2x H200 host: L12 on ONE GPU, flash-tokenizer, ${DP}" --description "8 workers x 4 threads on cuda:0; packed fp16"
T=200 run --out $R/h200-l12-$tag-2gpu $common "$BROKER" --workers 8 --worker-args "--threads 4 --devices 0,1 $DP" \
    --title "2x H200 host: L12 on TWO GPUs, flash-tokenizer, ${DP}" --description "8 workers x 4 threads, round robin over cuda:0 and cuda:1"
for n in h200-l12-$tag-1gpu h200-l12-$tag-2gpu; do
  echo "## $n"; sed -n '/## Results Summary/,/^_Latencies/p;/^| Config | Agg TP/,/^$/p' $R/$n/$n.md | grep "^|"; done
