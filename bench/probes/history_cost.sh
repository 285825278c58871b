#!/usr/bin/env bash
# What the broker's history (broker/history.py) costs its loop: broker-bound pairs/s with the null engine,
# this tree against another (REV, default: the commit before the history came), by turns, in one run.
# From the repo root: bash bench/probes/history_cost.sh [REV] [ROUNDS]   (prints one line a run, then the medians)
set -euo pipefail
rev=${1:-63ba790~1}; rounds=${2:-3}
old=$(mktemp -d); git worktree add -q "$old" "$rev"; trap 'git worktree remove --force "$old"' EXIT
declare -A runs
for round in $(seq "$rounds"); do
  for tree in "$old" "$PWD"; do
    label=$([ "$tree" = "$PWD" ] && echo "this tree" || echo "$rev")
    out=$(mktemp -d)
    PYTHONPATH="$tree" python -m rerankpool --log-level ERROR bench --engine null --model tiny-bert --pairs 150000 \
      --batch 20 --concurrency 32 --out "$out/run" > /dev/null 2>&1
    tp=$(grep -A 4 "## Results Summary" "$out/run/run.md" | tail -1 | awk -F'|' '{print $9}' | tr -d ' ')
    echo "round $round, $label: $tp pairs/s"
    runs[$label]="${runs[$label]:-} $tp"
  done
done
for label in "$rev" "this tree"; do
  echo "$label: median $(echo ${runs[$label]} | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') pairs/s"
done
