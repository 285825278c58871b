#!/usr/bin/env bash
# H100: the pool with --device-process (one process runs the model, two passes in flight; the workers only
# tokenize), with CrossEncoder.predict and the ceilings in the same runs where a part says so.
# One device call a part: `bash bench/gpu/h100_device.sh N`, N =
#   1  L6 SQuAD with its A/B partner without the device process; L6 synthetic
#   2  L12; one worker per lone request; pass sizes and worker counts
#   3  long runs at saturation; a lone request shared by four workers
#   4  synthetic pairs in 32- and 128-pair requests
#   5  the headline at saturation, long runs, after inputs went to the GPU from pinned memory
#   6  where a lone request's time goes, hop by hop
#   8  the kernels of a small pass; saturation against the code of 74ad972 (unpack it first with
#      `git archive 74ad972 rerankpool | tar -x -C .carry/old`, and carry .carry/old)
#   9  a lone request after the graphs got fewer rows
#   10 how the tokenizer's threads wait between the batches of a lone request
#   11 the headline with baseline and ceilings, and lone requests (its first run, at 643f7ac, had the lone
#      request's halves run as one pass, since reverted: bench/results/h100-*-group in git history at edd338e)
#   12 lone requests, three fresh pools each for L6 and L12, by turns
#   13 --compile (fused add + LayerNorm): kernel profile, and L12 eager and compiled by turns
#   14 (MODEL: l6 or l12) the single-threaded worker of --device-process against 280102c, taking turns: a lone
#      request, and saturation (unpack it first with `git archive 280102c rerankpool | tar -x -C .carry/old`);
#      OLD=a299e72 AB=mends ran it against a299e72 (bench/results/h100-l6-mends-*)
#   15 probes: two small graph passes on two streams (lanes_probe) and tokenizer threads (tokenize_threads)
#   16 the host alone: 8 processes of fixed CPU work, looking for stalls that hit them all at once (stall_probe)
#   17 a check of the code of e598e66: L6 and L12, a lone request and saturation
# Parts 11 and 12 take TAG (the runs' names) and WHAT (the code they measure); bench/results/*-onethread ran
# with TAG=onethread after the --device-process worker went single-threaded.
# Part 7 (busy polling, --spin-us, since removed) ran at 5856859.
set -uo pipefail
source bench/gpu/setup.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $R/host.txt; nproc | tee -a $R/host.txt
python3 -c "import torch, transformers, sentence_transformers as st; print(torch.__version__, transformers.__version__, st.__version__)" | tee -a $R/host.txt
# A probe script on 16- and 32-pair batches of both models, into $R/PREFIX-MODEL.txt: probe SCRIPT PREFIX [ARGS]
probe() {
  for m in /tmp/l6 ms-marco-MiniLM-L-12-v2; do
    timeout 150 python3 bench/gpu/$1.py $(python3 -c "from rerankpool.models import resolve_model as r; print(r('$m').path)") \
      16 32 ${3:-} 2>&1 | grep -v Warn | tee $R/$2-$(basename $m).txt
  done
}
POOL="--device cuda --engine torch:float16 --workers 4 --batch 32"
W8="--device cuda --engine torch:float16 --workers 8 --batch 32"
DP="--threads 8 --device-process"
SYN="--dataset synthetic --synthetic-words 30,60"
# The GPU tests and the device process's tests (the tiny test model needs .carry/site's vocabulary).
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/unit/test_engines_parity.py tests/unit/test_device_process.py \
  -k "cuda or packed or graph or device" 2>&1 | tail -3 | tee $R/gpu-tests.txt
if [ "${1:-1}" = 14 ]; then
  case "${2:-l6}" in
    l6) M=/tmp/l6; NAME="L6 stand-in" ;;
    *) M=ms-marco-MiniLM-L-12-v2; NAME="L12 (default, real)" ;;
  esac
  # OLD: the revision unpacked in .carry/old; AB: the runs' names (h100-MODEL-AB-old-1 ...); NEW: this tree, in words.
  OLD=${OLD:-280102c}; AB=${AB:-worker}; NEW=${NEW:-"the single-threaded --device-process worker"}
  names=""
  for i in 1 2; do
    for v in old new; do
      n=h100-${2:-l6}-$AB-$v-$i; names="$names $n"
      what=$NEW; [ $v = old ] && what="the code of $OLD"
      (if [ $v = old ]; then cd .carry/old; export PYTHONPATH=/tmp/site:$OLDPWD/.carry/site; fi
       T=150 run --out $R/$n --model $M $POOL --concurrency 1,128 --pairs 40000 --broker-args "$BROKER" \
         --worker-args "$DP" --title "H100: $NAME, SQuAD pairs, $what (A/B $i)" \
         --description "this tree and $OLD take turns on one host")
    done
  done
elif [ "${1:-1}" = 15 ]; then
  L12=$(python3 -c "from rerankpool.models import resolve_model as r; print(r('ms-marco-MiniLM-L-12-v2').path)")
  timeout 100 python3 bench/gpu/tokenize_threads.py $L12/tokenizer.json 16 32 2>&1 | tee $R/tokenize-threads.txt
  probe lanes_probe lanes
elif [ "${1:-1}" = 13 ]; then
  names="h100-l12-eager-1 h100-l12-compile-1 h100-l12-eager-2 h100-l12-compile-2 h100-l6-compile"
  probe kernel_profile kernel-profile-compile --compile
  for i in 1 2; do
    for c in eager compile; do
      flags="$DP"; [ $c = compile ] && flags="$DP --compile"
      T=240 run --out $R/h100-l12-$c-$i --model ms-marco-MiniLM-L-12-v2 $POOL --concurrency 1,128 --pairs 40000 \
          --broker-args "$BROKER" --worker-args "$flags" --title "H100: L12 (default, real), SQuAD pairs, $c (A/B $i)" \
          --description "--compile fuses each residual add with its LayerNorm; eager and compiled take turns"
    done
  done
  T=240 run --out $R/h100-l6-compile --model /tmp/l6 $POOL --concurrency 1,128 --pairs 40000 --broker-args "$BROKER" \
      --worker-args "$DP --compile" --title "H100: L6 stand-in, SQuAD pairs, --compile" \
      --description "--compile fuses each residual add with its LayerNorm"
elif [ "${1:-1}" = 12 ]; then
  F=${TAG:+-$TAG}; WHAT=${WHAT:-"the final code"}
  names=""
  for i in 1 2 3; do
    names="$names h100-l6-lone$F-r$i h100-l12-lone$F-r$i"
    T=90 run --out $R/h100-l6-lone$F-r$i --model /tmp/l6 $POOL --concurrency 1 --pairs 16000 --broker-args "$BROKER" \
        --worker-args "$DP" --title "H100: L6 stand-in, a lone 32-pair request, SQuAD pairs, repeat $i" \
        --description "$WHAT; three fresh pools a model, taking turns, on one host"
    T=90 run --out $R/h100-l12-lone$F-r$i --model ms-marco-MiniLM-L-12-v2 $POOL --concurrency 1 --pairs 16000 \
        --broker-args "$BROKER" --worker-args "$DP" \
        --title "H100: L12 (default, real), a lone 32-pair request, SQuAD pairs, repeat $i" \
        --description "as h100-l6-lone$F-r$i"
  done
elif [ "${1:-1}" = 17 ]; then
  names="h100-l6-check6 h100-l12-check6"
  T=150 run --out $R/h100-l6-check6 --model /tmp/l6 $POOL --concurrency 1,128 --pairs 40000 --broker-args "$BROKER" \
      --worker-args "$DP" --title "H100: L6 stand-in, SQuAD pairs, a check run" \
      --description "4 workers x 8 threads, device process"
  T=150 run --out $R/h100-l12-check6 --model ms-marco-MiniLM-L-12-v2 $POOL --concurrency 1,128 --pairs 40000 \
      --broker-args "$BROKER" --worker-args "$DP" --title "H100: L12 (default, real), SQuAD pairs, a check run" \
      --description "as h100-l6-check6"
elif [ "${1:-1}" = 16 ]; then
  # The host alone, nothing of ours running: do all processes stall at once, now and then?
  timeout 60 python3 bench/gpu/stall_probe.py 8 12 2>&1 | tee $R/stall-probe.txt
  names=""
elif [ "${1:-1}" = 11 ]; then
  # TAG names the runs (default "final"); WHAT says what code they measure.
  F=${TAG:-final}; WHAT=${WHAT:-"this tree"}
  names="h100-l6-$F h100-l12-$F h100-l6-synth-lone-$F"
  T=300 run --out $R/h100-l6-$F --model /tmp/l6 $POOL --concurrency 1,128 --pairs 80000 \
      --baseline --ceilings --broker-args "$BROKER" --worker-args "$DP" \
      --title "H100: L6 stand-in, SQuAD pairs, $WHAT" \
      --description "4 workers x 8 threads, device process"
  T=240 run --out $R/h100-l12-$F --model ms-marco-MiniLM-L-12-v2 $POOL --concurrency 1,128 --pairs 40000 \
      --baseline --ceilings --broker-args "$BROKER" --worker-args "$DP" \
      --title "H100: L12 (default, real), SQuAD pairs, $WHAT" --description "as h100-l6-$F"
  T=90 run --out $R/h100-l6-synth-lone-$F --model /tmp/l6 $POOL --concurrency 1 --pairs 16000 $SYN \
      --broker-args "$BROKER" --worker-args "$DP" \
      --title "H100: L6 stand-in, a lone 32-pair request, ~70-token synthetic pairs, $WHAT" \
      --description "as h100-l6-$F, ~70-token pairs"
elif [ "${1:-1}" = 10 ]; then
  names="h100-l6-omp-passive h100-l6-omp-spin h100-l6-omp-t4 h100-l6-omp-passive-2"
  lone() { T=90 run --out $R/$1 --model /tmp/l6 $POOL --concurrency 1 --pairs 8000 --broker-args "$BROKER" \
      --worker-args "$2" --title "H100: L6 stand-in, a lone request, tokenizer threads: $3" --description "$3"; }
  lone h100-l6-omp-passive "$DP" "8 threads a worker; OpenMP threads sleep after each batch (PASSIVE, the default on GPUs)"
  OMP_WAIT_POLICY=ACTIVE GOMP_SPINCOUNT=50000 lone h100-l6-omp-spin "$DP" \
      "8 threads a worker; OpenMP threads spin 50,000 rounds after each batch before they sleep"
  lone h100-l6-omp-t4 "--threads 4 --device-process" "4 threads a worker (PASSIVE)"
  lone h100-l6-omp-passive-2 "$DP" "8 threads a worker (PASSIVE), again"
elif [ "${1:-1}" = 9 ]; then
  names="h100-l6-lone h100-l6-synth-lone h100-l12-lone"
  probe kernel_profile kernel-profile-rows
  T=90 run --out $R/h100-l6-lone --model /tmp/l6 $POOL --concurrency 1 --pairs 16000 --broker-args "$BROKER" \
      --worker-args "$DP" --title "H100: L6 stand-in, a lone 32-pair request, SQuAD pairs" \
      --description "graphs with few rows for usual pairs; 500 requests at concurrency 1"
  T=90 run --out $R/h100-l6-synth-lone --model /tmp/l6 $POOL --concurrency 1 --pairs 16000 $SYN --broker-args "$BROKER" \
      --worker-args "$DP" --title "H100: L6 stand-in, a lone 32-pair request, ~70-token synthetic pairs" \
      --description "as h100-l6-lone on the issue's synthetic pairs"
  T=90 run --out $R/h100-l12-lone --model ms-marco-MiniLM-L-12-v2 $POOL --concurrency 1 --pairs 16000 \
      --broker-args "$BROKER" --worker-args "$DP" \
      --title "H100: L12 (default, real), a lone 32-pair request, SQuAD pairs" --description "as h100-l6-lone, real 12-layer model"
elif [ "${1:-1}" = 8 ]; then
  names="h100-l6-ab-old-1 h100-l6-ab-new-1 h100-l6-ab-old-2 h100-l6-ab-new-2"
  probe kernel_profile kernel-profile
  # Saturation, this tree against 74ad972 (unpacked in .carry/old), taking turns.
  for i in 1 2; do
    (cd .carry/old && PYTHONPATH=/tmp/site:$OLDPWD/.carry/site T=150 run --out $R/h100-l6-ab-old-$i --model /tmp/l6 $POOL \
      --concurrency 128 --pairs 80000 --broker-args "$BROKER" --worker-args "$DP" \
      --title "H100: L6 stand-in at saturation, code of 74ad972 (A/B $i)" --description "as h100-l6-pinned")
    T=150 run --out $R/h100-l6-ab-new-$i --model /tmp/l6 $POOL --concurrency 128 --pairs 80000 --broker-args "$BROKER" \
      --worker-args "$DP" --title "H100: L6 stand-in at saturation, this tree (A/B $i)" --description "as h100-l6-pinned"
  done
elif [ "${1:-1}" = 6 ]; then
  names="h100-l6-hops h100-l6-hops-nodevice h100-l12-hops"
  probe latency_probe latency-probe
  T=150 run --out $R/h100-l6-hops --model /tmp/l6 $POOL --concurrency 1,128 --pairs 40000 \
      --broker-args "$BROKER" --worker-args "$DP" \
      --title "H100: L6 stand-in, where a lone request's time goes" \
      --description "4 workers x 8 threads, device process: short passes poll the socket while the GPU runs, graph inputs from pinned memory"
  T=90 run --out $R/h100-l6-hops-nodevice --model /tmp/l6 $POOL --concurrency 1 --pairs 8000 \
      --broker-args "$BROKER" --worker-args "--no-device-process --threads 8" \
      --title "H100: L6 stand-in, where a lone request's time goes, each worker runs the model" \
      --description "as h100-l6-hops without --device-process"
  T=90 run --out $R/h100-l12-hops --model ms-marco-MiniLM-L-12-v2 $POOL --concurrency 1 --pairs 8000 \
      --broker-args "$BROKER" --worker-args "$DP" \
      --title "H100: L12 (default, real), where a lone request's time goes" --description "as h100-l6-hops, real 12-layer model"
elif [ "${1:-1}" = 1 ]; then
  names="h100-l6-device h100-l6-nodevice h100-l6-synth-device"
  T=200 run --out $R/h100-l6-device --model /tmp/l6 $POOL --concurrency 1,64,128 --pairs 40000 \
      --baseline --ceilings --broker-args "$BROKER" --worker-args "$DP" \
      --title "H100: L6 stand-in, --device-process, SQuAD pairs" \
      --description "4 workers x 8 tokenizer threads feeding one device process (packed fp16, varlen attention)"
  T=100 run --out $R/h100-l6-nodevice --model /tmp/l6 $POOL --concurrency 1,128 --pairs 24000 \
      --broker-args "$BROKER" --worker-args "--no-device-process --threads 8" \
      --title "H100: L6 stand-in, each worker runs the model (A/B)" \
      --description "as h100-l6-device without --device-process, on the same host"
  T=200 run --out $R/h100-l6-synth-device --model /tmp/l6 $W8 --concurrency 1,128,256 --pairs 60000 $SYN \
      --baseline --ceilings --broker-args "$BROKER" --worker-args "--threads 4 --device-process" \
      --title "H100: L6 stand-in, --device-process, 8 workers, ~70-token synthetic pairs" \
      --description "8 workers x 4 tokenizer threads feeding one device process, on synthetic pairs of ~70 tokens"
elif [ "$1" = 5 ]; then
  names="h100-l6-synth-pinned h100-l6-pinned h100-l12-pinned"
  T=240 run --out $R/h100-l6-synth-pinned --model /tmp/l6 $W8 --concurrency 256 --pairs 240000 $SYN \
      --baseline --ceilings --broker-args "$BROKER" --worker-args "--threads 4 --device-process" \
      --title "H100: L6 stand-in, --device-process, 8 workers, ~70-token synthetic pairs, long run" \
      --description "inputs copied from pinned memory, two passes in flight; 240,000 pairs"
  T=150 run --out $R/h100-l6-pinned --model /tmp/l6 $POOL --concurrency 128 --pairs 80000 \
      --baseline --ceilings --broker-args "$BROKER" --worker-args "$DP" \
      --title "H100: L6 stand-in, --device-process, 4 workers, SQuAD pairs, long run" \
      --description "inputs copied from pinned memory, two passes in flight; 80,000 pairs"
  T=90 run --out $R/h100-l12-pinned --model ms-marco-MiniLM-L-12-v2 $POOL --concurrency 128 --pairs 80000 \
      --broker-args "$BROKER" --worker-args "$DP" \
      --title "H100: L12, --device-process, 4 workers, SQuAD pairs, long run" \
      --description "inputs copied from pinned memory, two passes in flight; 80,000 pairs"
elif [ "$1" = 4 ]; then
  names="h100-l6-synth-device-b128"
  T=400 run --out $R/h100-l6-synth-device-b128 --model /tmp/l6 --device cuda --engine torch:float16 --workers 8 \
      --batch 32,128 --concurrency 1,256 --pairs 120000 $SYN --baseline --ceilings --broker-args "$BROKER" \
      --worker-args "--threads 4 --device-process" \
      --title "H100: L6 stand-in, --device-process, 8 workers, synthetic pairs in 32- and 128-pair requests" \
      --description "at 32-pair requests the broker (one Python thread) saturates first; 128-pair requests need a quarter of its work per pair"
elif [ "$1" = 3 ]; then
  names="h100-l6-synth-device-long h100-l6-device-long h100-l6-device-split8 h100-l6-nodevice-split8"
  T=120 run --out $R/h100-l6-synth-device-long --model /tmp/l6 $W8 --concurrency 256 --pairs 240000 $SYN \
      --broker-args "$BROKER" --worker-args "--threads 4 --device-process" \
      --title "H100: L6 stand-in, --device-process, 8 workers, synthetic pairs, a 4x longer run" \
      --description "as h100-l6-synth-device at concurrency 256, 240,000 pairs (~3 s of load)"
  T=120 run --out $R/h100-l6-device-long --model /tmp/l6 $W8 --concurrency 256 --pairs 160000 \
      --broker-args "$BROKER" --worker-args "--threads 4 --device-process" \
      --title "H100: L6 stand-in, --device-process, 8 workers, SQuAD pairs, a 4x longer run" \
      --description "as h100-l6-device-8w at concurrency 256, 160,000 pairs (~3.5 s of load)"
  for d in "$DP" "--no-device-process --threads 8"; do
    n=h100-l6-device-split8; [ "$d" != "$DP" ] && n=h100-l6-nodevice-split8
    T=70 run --out $R/$n --model /tmp/l6 $POOL --concurrency 1 --pairs 6000 \
        --broker-args "$BROKER --split-min 8" --worker-args "$d" \
        --title "H100: L6 stand-in, one client, --split-min 8, worker flags: $d" \
        --description "32-pair requests at concurrency 1, shared by four idle workers"
  done
else
  names="h100-l12-device h100-l6-device-split0 h100-l6-device-8w h100-l6-synth-device-4w h100-l6-synth-device-65k"
  T=200 run --out $R/h100-l12-device --model ms-marco-MiniLM-L-12-v2 $POOL --concurrency 1,64,128 --pairs 40000 \
      --baseline --ceilings --broker-args "$BROKER" --worker-args "$DP" \
      --title "H100: L12 (default, real), --device-process, SQuAD pairs" --description "as h100-l6-device, real 12-layer model"
  T=70 run --out $R/h100-l6-device-split0 --model /tmp/l6 $POOL --concurrency 1 --pairs 6000 \
      --broker-args "$BROKER --split-min 0" --worker-args "$DP" \
      --title "H100: L6 stand-in, --device-process, one client, --split-min 0" \
      --description "32-pair requests at concurrency 1, each taken whole by one worker"
  T=90 run --out $R/h100-l6-device-8w --model /tmp/l6 $W8 --concurrency 128,256 --pairs 40000 \
      --broker-args "$BROKER" --worker-args "--threads 4 --device-process" \
      --title "H100: L6 stand-in, --device-process, 8 workers x 4 threads" --description "SQuAD pairs"
  for p in 131072 65536; do
    n=h100-l6-synth-device-4w; [ $p = 65536 ] && n=h100-l6-synth-device-65k
    T=80 run --out $R/$n --model /tmp/l6 $POOL --concurrency 128 --pairs 60000 $SYN \
        --broker-args "$BROKER" --worker-args "$DP --pass-tokens $p" \
        --title "H100: L6 stand-in, --device-process --pass-tokens $p, 4 workers, synthetic pairs" \
        --description "merged passes of at most $p tokens"
  done
fi
for n in $names; do echo "## $n"
  sed -n '/## Results Summary/,/^_Latencies/p;/^| Config | Agg TP/,/^$/p;/Where a Request/,/^_Medians/p' $R/$n/$n.md \
    | grep "^|"; done
