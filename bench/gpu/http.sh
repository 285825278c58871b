#!/usr/bin/env bash
# The HTTP gateway on a GPU host, in one run: the pool over ZeroMQ and over HTTP (N gateway processes),
# config by config, then Infinity 0.0.78's own HTTP server (`infinity_emb v2`, /rerank) on the same requests,
# with CrossEncoder.predict as the baseline. L6 stand-in, SQuAD: each query with its gold passage and 31
# others, one 32-pair request per query; a lone client, then 128 clients.
# Carry .whl (rerankpool's wheels), .whl-infinity (Infinity's pinned stack, installed apart) and .carry
# (the SQuAD file, the stand-in's config and tokenizer in .carry/l6): `bash bench/gpu/http.sh`.
set -uo pipefail
source bench/gpu/setup.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $R/host.txt; nproc | tee -a $R/host.txt
GATEWAYS=${GATEWAYS:-4}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/inf-site \
  .whl-infinity/*.whl || exit 1
# Infinity in its own process with its own pinned stack; fp16, batches of 128 (its best on a GPU, INFINITY.md).
INFINITY_ANONYMOUS_USAGE_STATS=0 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONPATH=/tmp/inf-site \
  python3 -m infinity_emb.cli v2 --model-id /tmp/l6 --engine torch --device cuda --dtype float16 --batch-size 128 \
  --no-bettertransformer --port 7997 > $R/infinity.log 2>&1 &
INF=$!
python3 - <<'PY' || { tail -30 $R/infinity.log; exit 1; }
import time, urllib.request
for _ in range(240):
    try:
        urllib.request.urlopen("http://127.0.0.1:7997/health", timeout=1); break
    except Exception:
        time.sleep(0.5)
else:
    raise SystemExit("Infinity did not start")
PY
BROKER="--max-batch 256 --max-batch-tokens 131072 --batch-timeout-ms 5 --bucket-edges 512"
COMMON="--model /tmp/l6 --device cuda --engine torch:float16 --workers 4 --batch 32 --dataset squad-rerank
  --candidates 32 --load-processes 4 --http --http-processes $GATEWAYS --external infinity-0.0.78=http://127.0.0.1:7997"
# A lone client (with CrossEncoder.predict on the same pairs), then 128 clients on six times the queries.
T=200 run --out $R/h100-http-lone $COMMON --queries 1000 --concurrency 1 --baseline \
  --broker-args "$BROKER" --worker-args "--threads 8 --device-process" \
  --title "GPU, a lone client: the pool over ZeroMQ and over HTTP, and Infinity 0.0.78 over HTTP" \
  --description "L6 stand-in, fp16, 4 workers x 8 threads with a device process, $GATEWAYS gateway processes"
T=260 run --out $R/h100-http-load $COMMON --queries 6000 --concurrency 128 \
  --broker-args "$BROKER" --worker-args "--threads 8 --device-process" \
  --title "GPU, 128 clients: the pool over ZeroMQ and over HTTP, and Infinity 0.0.78 over HTTP" \
  --description "L6 stand-in, fp16, 4 workers x 8 threads with a device process, $GATEWAYS gateway processes"
kill $INF 2>/dev/null
for n in lone load; do grep -A6 "^| Batch | Conc" $R/h100-http-$n/h100-http-$n.md; grep -A8 "^| Batch | Conc | Engine | Subset" $R/h100-http-$n/h100-http-$n.md; done
grep -A2 "^| Baseline" $R/h100-http-lone/h100-http-lone.md
