#!/usr/bin/env bash
# Session 30, call 5: the adaptation again from X1 (its weights in models/demo for the call), at
# half the learning rate and with more of the time at 2048 tokens, to see whether it costs less
# perplexity and less 2048-token variable tracking; reference, eval at 4096 and 2048.
set -u
start=$(date +%s)
t() { echo "[$(( $(date +%s) - start )) s] $*"; }
source .device/env.sh
tar -xJf .device/nm.tar.xz
mkdir -p build/Release /tmp/o
xz -dc .device/addon-main-s28.xz > build/Release/lighttransfer.node
sha256sum models/demo/model.safetensors | tee /tmp/o/init-sha256.txt
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee /tmp/o/card.txt
MINUTES=3.5 STEPS="train reference eval" EVAL_CONFIG=bench/quality/demo-50.json timeout 400 \
  tools/gpu/demo_model_cycle.sh /tmp/o/L2 --init models/demo --stage-weights 0,0,1,2,2 --same-length-keys 0.5 \
  --recall-rows 0.5 --lr 5e-4 --warmup 50 --local-layers 4,5,6,7 --early-local-window 256 --early-local-share 0.5 \
  --eval-samples 10
echo "cycle rc $?"
t "eval 2048"
timeout 100 node dist/lib/cli/index.js eval -m /tmp/o/L2/demo -d cuda \
  --config bench/results/quality-recipes-2026-12-03-h200-s27/ours-cpu/config-2048.json -o /tmp/o/L2/eval-2048 > /tmp/o/L2/eval-2048-log.txt 2>&1
echo "eval rc $?"; sed -n '/Context 2048/,/^Each/p' /tmp/o/L2/eval-2048/eval.md
t "pack"
(cd /tmp/o/L2 && tar -cJf "$OUT/model.tar.xz" demo)
(cd /tmp/o && tar -cJf "$OUT/rest.tar.xz" card.txt init-sha256.txt L2/train.log L2/reference L2/quality L2/eval-2048 L2/eval-2048-log.txt)
t "done"
