#!/usr/bin/env bash
# Stage-by-stage worker profile on the GPU host (see rerankpool/bench/profile.py); setup as in h100.sh.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/.carry/site:$PWD PYTHONUNBUFFERED=1 TQDM_DISABLE=1
export RERANKPOOL_SQUAD=$PWD/.carry/squad-dev-rerank.json.gz RERANKPOOL_CACHE=/tmp/rpcache
bash bench/gpu/make_l6.sh || exit 1
P="python3 -m rerankpool.bench.profile --model /tmp/l6 --device cuda --dtype float16 --pairs 8000"
for spec in "1 16 128" "1 16 512" "1 16 512 --serial" "1 16 512 --switch-interval-s 0.0002" "1 8 512 --switch-interval-s 0.0002" \
            "4 16 256" "4 16 256 --serial" "4 16 256 --switch-interval-s 0.0002" "2 16 512 --switch-interval-s 0.0002"; do
  set -- $spec
  echo "== processes=$1 threads=$2 batch=$3 ${4:-} ${5:-}"
  timeout 150 $P --processes $1 --threads $2 --batch $3 ${4:-} ${5:-} 2>&1 | grep '^{' | python3 -c "
import json,sys
for line in sys.stdin:
    r=json.loads(line); e=r['each'][0]
    print({k: round(v) for k,v in r['total'].items()}, 'waste%', round(e['padding_waste_pct'],1), 'chunks', round(e['chunks_per_batch'],1), 'tok_ms', round(e['pipeline_tokenize_ms_p50'],1), 'inf_ms', round(e['pipeline_inference_ms_p50'],1))"
done
