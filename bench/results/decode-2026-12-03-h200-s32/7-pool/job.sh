#!/usr/bin/env bash
# Branch fill-faster (on main c8ffa7f; TypeScript only): hybrid against full throughput at 4K and
# 32K (bench/hybrid-throughput.ts), main's dist (dist-main) against the branch's (dist), both on
# main's addon (addon-s32-main2), in turns: main, pool, pool, main. Carry .device (node.xz,
# nm-tests.tar.xz, env.sh, addon-s32-main2.xz), dist and dist-main.
set -u
start=$(date +%s)
t() { echo "[$(( $(date +%s) - start )) s] $*"; }
source .device/env.sh
tar -xJf .device/nm-tests.tar.xz
mkdir -p /tmp/addons /tmp/o/hybrid
xz -dc .device/addon-s32-main2.xz > /tmp/addons/main.node
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee /tmp/o/card.txt
t "make8b"
python3 tools/make_llama8b.py /tmp/llama8b > /tmp/o/make8b.txt 2>&1; echo "make8b rc $?" >> /tmp/o/make8b.txt
tail -1 /tmp/o/make8b.txt
run=0
for build in main pool pool main; do
  run=$((run + 1))
  dist=dist; [ "$build" = main ] && dist=dist-main
  t "run $run: $build"
  LIGHTTRANSFER_ADDON=/tmp/addons/main.node timeout 60 node $dist/bench/hybrid-throughput.js --model /tmp/llama8b \
    --kv-memory 40GiB --contexts 4096,32768 --out /tmp/o/hybrid/$run-$build.json > /tmp/o/hybrid/$run-$build.txt 2>&1
  echo "rc $?"; grep -E "^ *(4096|32768) " /tmp/o/hybrid/$run-$build.txt
  (cd /tmp/o && tar -cJf "$OUT/hybrid.tar.xz" hybrid card.txt make8b.txt)
done
t "done"
