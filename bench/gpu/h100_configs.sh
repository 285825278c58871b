#!/usr/bin/env bash
# H100 host, flash-tokenizer: workers per GPU x threads x largest batch at saturation (L6, SQuAD), and the low-load
# latency of the fewer-workers setting. Which pool setting comes closest to the packed forward-pass ceiling?
set -uo pipefail
source bench/gpu/setup.sh
# --max-batch given again overrides the one in $BROKER (the last flag wins).
L6="--model /tmp/l6 --device cuda --engine torch:float16 --batch 32"
for cfg in "4 8 256" "4 8 512" "2 16 512" "2 16 256" "8 4 512"; do
  set -- $cfg
  T=80 run --out $R/h100-l6-w$1-t$2-b$3 $L6 --workers $1 --concurrency 128,256 --pairs 40000 --broker-args "$BROKER --max-batch $3" \
      --worker-args "--no-device-process --threads $2" --title "H100: L6 stand-in, $1 workers x $2 threads, batches up to $3" \
      --description "flash-tokenizer; saturation"
done
T=80 run --out $R/h100-l6-w2-t16-lat $L6 --workers 2 --concurrency 1 --pairs 8000 --broker-args "$BROKER --max-batch 512" \
    --worker-args "--no-device-process --threads 16" --title "H100: L6 stand-in, 2 workers x 16 threads, one client" --description "latency"
T=80 run --out $R/h100-l6-w4-t8-lat $L6 --workers 4 --concurrency 1 --pairs 8000 --broker-args "$BROKER --max-batch 512" \
    --worker-args "--no-device-process --threads 8" --title "H100: L6 stand-in, 4 workers x 8 threads, one client" --description "latency"
for d in $R/h100-l6-w*; do n=$(basename $d); echo "## $n"; sed -n '/## Results Summary/,/^_Latencies/p' $d/$n.md | grep "^| 32"
  grep -A12 '### Latency' $d/$n.md | grep '| P50' | head -1; done
