#!/usr/bin/env bash
# Bench scenarios on a GPU host, in one device call, from the repo root: `bash bench/gpu/run.sh SCENARIO [SCENARIO...]`.
# Each runs as `python3 -m rerankpool bench --scenario NAME --out $R/NAME` (bench/scenarios/NAME.toml); $R comes back
# as $OUT/results.tgz. Here is only what a scenario cannot say: the carried wheels and data (setup.sh), the host's
# description, and Infinity, started from .whl-infinity when a scenario drives an external server named infinity*.
# T: each run's time limit in seconds (default 300). TESTS=1: the GPU tests first.
set -uo pipefail
[ $# -gt 0 ] || { echo "usage: bash bench/gpu/run.sh SCENARIO [SCENARIO...]"; exit 2; }
source bench/gpu/setup.sh
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # no NVLink multicast on 2+ GPUs
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $R/host.txt; nproc | tee -a $R/host.txt
python3 -c "import torch, transformers, sentence_transformers as st; print(torch.__version__, transformers.__version__, st.__version__)" | tee -a $R/host.txt
if [ "${TESTS:-0}" = 1 ]; then  # the tiny test model needs .carry/site's vocabulary
  timeout 300 python3 -m pytest -q -p no:cacheprovider -rs tests/component/test_engines_parity.py \
    tests/component/test_device_process.py tests/component/test_families.py tests/component/test_llm_reranker.py \
    -k "cuda or packed or graph or device" 2>&1 | tail -15 | tee $R/gpu-tests.txt
fi
# "MODEL_DIR PORT" of the first scenario that drives Infinity, or nothing.
infinity=$(python3 - "$@" <<'PY'
import sys
from urllib.parse import urlparse
from rerankpool.bench.scenarios import load
from rerankpool.models import resolve_model
for ref in sys.argv[1:]:
    scenario = load(ref)
    for name, url in scenario.options.get("external", []):
        if name.startswith("infinity"):
            print(resolve_model(scenario.options["model"]).path, urlparse(url).port)
            raise SystemExit
PY
) || exit 1
if [ -n "$infinity" ]; then
  read -r model port <<< "$infinity"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/inf-site \
    .whl-infinity/*.whl || exit 1
  # Its own process and pinned stack; fp16, batches of 128 (its best on a GPU).
  INFINITY_ANONYMOUS_USAGE_STATS=0 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONPATH=/tmp/inf-site \
    python3 -m infinity_emb.cli v2 --model-id $model --engine torch --device cuda --dtype float16 --batch-size 128 \
    --no-bettertransformer --port $port > $R/infinity.log 2>&1 &
  INF=$!
  trap 'kill $INF 2>/dev/null; tar czf $OUT/results.tgz -C $R . 2>/dev/null' EXIT
  python3 - $port <<'PY' || { tail -30 $R/infinity.log; exit 1; }
import sys, time, urllib.request
for _ in range(240):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=1); break
    except Exception:
        time.sleep(0.5)
else:
    raise SystemExit("Infinity did not start")
PY
fi
for name in "$@"; do
  T=${T:-300} run --scenario $name --out $R/$name
  sed -n '/## Results Summary/,/^_Latencies/p' $R/$name/$name.md | grep "^|"
done
