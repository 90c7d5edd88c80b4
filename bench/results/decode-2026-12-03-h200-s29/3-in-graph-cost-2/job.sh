#!/usr/bin/env bash
# Session 29, call 3: in-graph cost of one more launch of the o, down and head GEMVs (timing only:
# a second accumulate doubles the residual, so those runs fail the model check by design), and
# decode attention with its splits capped at 16 and 8, in turns against the same build.
set -u
start=$(date +%s)
t() { echo "[$(( $(date +%s) - start )) s] $*"; }
source .device/env.sh
tar -xJf .device/nm.tar.xz
mkdir -p build/Release /tmp/o/ab
xz -dc .device/addon-exp2.xz > build/Release/lighttransfer.node
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee /tmp/o/card.txt
python3 tools/make_llama8b.py /tmp/llama8b > /tmp/o/make8b.txt 2>&1; echo "make8b rc $?"
t "made"
declare -A envs=([base]="" [attn]=LT_EXPERIMENT_DUP_ATTENTION=1 [o]=LT_EXPERIMENT_DUP_ACCUMULATE_K=4096 [down]=LT_EXPERIMENT_DUP_ACCUMULATE_K=14336 [head]=LT_EXPERIMENT_DUP_STORE=1 [split16]=LT_EXPERIMENT_SPLIT_CAP=16 [split8]=LT_EXPERIMENT_SPLIT_CAP=8)
order=(base attn o down head split16 split8 split8 split16 head down o attn base)
for round in 1 2; do
  run=0
  for name in "${order[@]}"; do
    run=$((run + 1))
    kv=${envs[$name]}
    ( [ -n "$kv" ] && export "$kv"; timeout 60 node dist/bench/model-decode.js /tmp/llama8b --batches 1 --contexts 4096,16384 \
        --out /tmp/o/ab/ab-$round-$run-$name.json > /tmp/o/ab/ab-$round-$run-$name.txt 2>&1 ) ; echo "round $round run $run $name rc $?"
  done
  t "round $round"
  [ $(( $(date +%s) - start )) -gt 300 ] && break
done
python3 tools/gpu/summarize_ab_decode.py /tmp/o/ab base attn o down head split16 split8 2>&1 | tee /tmp/o/ab/ab.txt
(cd /tmp/o && tar -cJf "$OUT/ab.tar.xz" ab card.txt make8b.txt)
t "done"
