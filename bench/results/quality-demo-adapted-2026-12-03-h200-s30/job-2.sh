#!/usr/bin/env bash
# Session 30, call 4: the adapted demo model's layer knock-out at 1024 tokens and our eval at 2048.
set -u
source .device/env.sh
tar -xJf .device/nm.tar.xz
mkdir -p build/Release /tmp/o
xz -dc .device/addon-main-s28.xz > build/Release/lighttransfer.node
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee /tmp/o/card.txt
timeout 250 node tools/layer_knockout.js models/demo 1024 4 passkey,niah-multikey,variable-tracking cuda | tee /tmp/o/knockout-1024.txt
echo "knockout rc $?"
timeout 200 node dist/lib/cli/index.js eval -m models/demo -d cuda \
  --config bench/results/quality-recipes-2026-12-03-h200-s27/ours-cpu/config-2048.json -o /tmp/o/eval-2048 > /tmp/o/eval-2048-log.txt 2>&1
echo "eval rc $?"; sed -n '/Context 2048/,/^Each/p' /tmp/o/eval-2048/eval.md
(cd /tmp/o && tar -cJf "$OUT/ko.tar.xz" card.txt knockout-1024.txt eval-2048 eval-2048-log.txt)
