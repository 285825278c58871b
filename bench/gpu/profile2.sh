#!/usr/bin/env bash
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/.carry/site:$PWD PYTHONUNBUFFERED=1 TQDM_DISABLE=1
export RERANKPOOL_SQUAD=$PWD/.carry/squad-dev-rerank.json.gz RERANKPOOL_CACHE=/tmp/rpcache
bash bench/gpu/make_l6.sh || exit 1
P="python3 -m rerankpool.bench.profile --model /tmp/l6 --device cuda --dtype float16 --pairs 8000"
for spec in "1 16 512" "1 4 512" "1 1 512"; do
  set -- $spec
  echo "== processes=$1 threads=$2 batch=$3"
  timeout 150 $P --processes $1 --threads $2 --batch $3 2>&1 | grep '^{' | python3 -c "
import json,sys
for line in sys.stdin:
    r=json.loads(line); e=r['each'][0]
    print({k: round(v) for k,v in r['total'].items()}, 'tok_ms', round(e['pipeline_tokenize_ms_p50'],1), 'inf_ms', round(e['pipeline_inference_ms_p50'],1))"
done
RAYON_NUM_THREADS=16 python3 - <<'PY'
# Does the tokenizer's thread pool slow a CUDA forward that follows it?
import time, torch, numpy as np, sys
sys.path.insert(0, ".")
from rerankpool.bench.datasets import load_squad, pair_stream
from tokenizers import Tokenizer
tok = Tokenizer.from_file("/tmp/l6/tokenizer.json"); tok.no_padding()
pairs = pair_stream(load_squad(), 4096)
x = torch.randn(512, 512, device="cuda", dtype=torch.float16)
def launches(n=2000):
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(n): y = x + 1
    torch.cuda.synchronize(); return (time.perf_counter() - t) / n * 1e6
print("us/launch idle", round(launches(), 2))
tok.encode_batch(pairs[:512]); print("us/launch right after encode_batch", round(launches(200), 2))
time.sleep(0.5); print("us/launch 0.5 s later", round(launches(), 2))
PY
