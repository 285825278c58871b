#!/usr/bin/env bash
# GPU sweep with GPU-tuned batching (longer batch timeout, coarse buckets, 8 tokenizer threads a worker).
set -uo pipefail
OUT=${OUT:-/tmp/out}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/.carry/site:$PWD PYTHONUNBUFFERED=1 TQDM_DISABLE=1
export RERANKPOOL_SQUAD=$PWD/.carry/squad-dev-rerank.json.gz RERANKPOOL_CACHE=/tmp/rpcache
R=/tmp/bench; mkdir -p $R
trap 'tar czf $OUT/results.tgz -C $R . 2>/dev/null' EXIT
bash bench/gpu/make_l6.sh || exit 1
GPU_BROKER="--max-batch 512 --max-batch-tokens 131072 --batch-timeout-ms 10 --bucket-edges 64,128,192,256,384,512"
run() { echo "== $*"; timeout ${T:-200} python3 -m rerankpool --log-level WARNING bench "$@" 2>&1 | grep -v "^Loading" | tail -3; }
for m in l6 l12; do
  model=/tmp/l6; [ $m = l12 ] && model=ms-marco-MiniLM-L-12-v2
  T=240 run --out $R/h100-$m-tuned --model $model --device cuda --engine torch:float16 --workers 4 --batch 32,128 \
      --concurrency 1,64 --pairs 20000 --baseline --ceilings --broker-args "$GPU_BROKER" --worker-args "--threads 8" \
      --title "H100: $m, torch fp16, GPU-tuned batching" \
      --description "4 workers x 8 tokenizer threads; batch timeout 10 ms, buckets 64..512; vs CrossEncoder.predict and the two ceilings"
done
