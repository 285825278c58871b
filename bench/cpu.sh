#!/usr/bin/env bash
# The CPU sweeps behind bench/results/cpu-*: run on an otherwise idle machine, from the repo root.
set -uo pipefail
R=bench/results
b() { timeout 1500 rerankpool --log-level WARNING bench "$@" 2>&1 | grep -v -e "^Loading" -e "pair/s]" | tail -2; }
b --out $R/cpu-l6-squad50x20 --model minilm-l6-standin --dataset squad-rerank --queries 50 --candidates 20 --batch 20 \
  --concurrency 50 --engine torch --workers 1,2 --baseline \
  --title "2-core CPU: L6 stand-in, 50 SQuAD queries x 20 candidates, all at once" --description "the bench issue's workload"
b --out $R/cpu-l6-squad32x4 --model minilm-l6-standin --dataset squad-dev --pairs 640 --batch 32 --concurrency 4 \
  --engine torch --workers 2 --baseline \
  --title "2-core CPU: L6 stand-in, 32-pair requests, 4 clients" --description "the reference reports' shape (batch 32, concurrency 4) on SQuAD pairs"
b --out $R/cpu-l12-default --model ms-marco-MiniLM-L-12-v2 --dataset squad-dev --pairs 320 --batch 32 --concurrency 1,4 \
  --engine torch,onnx:int8 --workers 2 --baseline \
  --title "2-core CPU: ms-marco-MiniLM-L-12-v2 (default)" --description "the real default model, torch fp32 and its shipped INT8 ONNX file"
b --out $R/cpu-mlx --model minilm-l6-standin --dataset squad-rerank --queries 4 --candidates 20 --batch 20 \
  --concurrency 4 --engine mlx,torch --workers 1 \
  --title "2-core CPU: MLX (Linux CPU build) vs torch" \
  --description "mlx[cpu] on Linux runs a reference BLAS: a parity check of the engine, not a speed contest; on macOS it uses Metal"
# The engines issue's workload: 50 queries x 20 candidates at once, every engine and dtype, 1 and 2 workers,
# with the fp32 forward ceiling (the model alone on length-sorted batches) measured in the same run.
b --out $R/cpu-engines-50x20 --model minilm-l6-standin --dataset squad-rerank --queries 50 --candidates 20 --batch 20 \
  --concurrency 50 --engine torch,torch:bfloat16,onnx,onnx:int8 --workers 1,2 --baseline --ceilings \
  --title "2-core CPU: engines on the 50x20 SQuAD workload (L6 stand-in)" \
  --description "torch fp32 and bf16, ONNX Runtime fp32 and INT8, pools of 1 and 2 workers, 50 queries x 20 candidates at once"
