#!/usr/bin/env bash
# Two-GPU scaling on a host with two H200s: the same saturated load on one GPU, then on two.
set -uo pipefail
source bench/gpu/setup.sh
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
nvidia-smi --query-gpu=name,memory.total --format=csv | tee $R/gpu.txt; nproc | tee -a $R/gpu.txt
T=200 run --out $R/h200-1gpu --model /tmp/l6 --device cuda --engine torch:float16 --workers 4 --batch 128 \
    --concurrency 64,128 --pairs 40000 --ceilings --broker-args "$GPU_BROKER" --worker-args "--threads 8 --devices 0" \
    --title "2x H200 host: L6 stand-in on ONE GPU" --description "4 workers on cuda:0"
T=200 run --out $R/h200-2gpu --model /tmp/l6 --device cuda --engine torch:float16 --workers 8 --batch 128 \
    --concurrency 64,128 --pairs 40000 --broker-args "$GPU_BROKER" --worker-args "--threads 8 --devices 0,1" \
    --title "2x H200 host: L6 stand-in on TWO GPUs" --description "8 workers, round robin over cuda:0 and cuda:1"
for n in h200-1gpu h200-2gpu; do sed -n '/## Results Summary/,/^_Latencies/p' $R/$n/$n.md | grep "^|"; done
