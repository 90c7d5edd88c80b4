#!/usr/bin/env bash
# Hybrid (50% lazy) against full decode throughput at the largest batch a 40 GiB KV budget holds,
# 4K and 32K (bench/hybrid-throughput.ts), before this session's host-side changes (main at
# e0578c1: native addon-main-s32, TypeScript dist-main) and after them (main at 4ead88c: native
# addon-s32-fill, TypeScript dist), in turns: before, after, after, before. Carry .device
# (node.xz, nm-tests.tar.xz, env.sh, addon-main-s32.xz, addon-s32-fill.xz), dist, dist-main.
set -u
start=$(date +%s)
t() { echo "[$(( $(date +%s) - start )) s] $*"; }
source .device/env.sh
tar -xJf .device/nm-tests.tar.xz
mkdir -p /tmp/addons /tmp/o/hybrid
xz -dc .device/addon-main-s32.xz > /tmp/addons/before.node
xz -dc .device/addon-s32-fill.xz > /tmp/addons/after.node
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee /tmp/o/card.txt
t "make8b"
python3 tools/make_llama8b.py /tmp/llama8b > /tmp/o/make8b.txt 2>&1; echo "make8b rc $?" >> /tmp/o/make8b.txt
tail -1 /tmp/o/make8b.txt
run=0
for build in before after after before; do
  run=$((run + 1))
  dist=dist; [ "$build" = before ] && dist=dist-main
  t "run $run: $build"
  LIGHTTRANSFER_ADDON=/tmp/addons/$build.node timeout 120 node $dist/bench/hybrid-throughput.js --model /tmp/llama8b \
    --kv-memory 40GiB --contexts 4096,32768 --out /tmp/o/hybrid/$run-$build.json > /tmp/o/hybrid/$run-$build.txt 2>&1
  echo "rc $?"; grep -E "^ *(4096|32768) " /tmp/o/hybrid/$run-$build.txt
  (cd /tmp/o && tar -cJf "$OUT/hybrid.tar.xz" hybrid card.txt make8b.txt)
done
t "done"
