#!/usr/bin/env bash
# (#13) qkv-rope (rope2 native code; dist with bench/kernels.ts's graph input holding the RoPE indices): the linear
# section of the kernel bench (q|k|v plain against norm + ropeAppendKv in graph replays), then batch 32 at 16K, where
# call22 had rope2 2% slower than main in one round cut short: main against rope2 in turns (ABBA).
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
t0=$(date +%s)
for v in main rope2; do xz -dc addons/$v.node.xz > /tmp/addon-$v.node; done
tar -xJf addons/dist-main.tar.xz && tar -xJf addons/dist-rope.tar.xz
mkdir -p build/Release && cp /tmp/addon-rope2.node build/Release/lighttransfer.node
timeout 70 node dist/bench/kernels.js --device cuda:0 --only linear > $OUT/linear-rope2.txt 2>&1
echo "== linear exit $? at $(( $(date +%s) - t0 )) s"; grep -E "n=6144|n=28672" $OUT/linear-rope2.txt | grep -E "gemv|auto"
PYTHONUNBUFFERED=1 timeout 90 python3 tools/make_llama8b.py /tmp/llama8b > /tmp/make.log 2>&1; echo "make exit $? at $(( $(date +%s) - t0 )) s"
ROUNDS=1 BATCHES=32 CONTEXTS=16384 timeout 200 bash tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/ab main=/tmp/addon-main.node,dist-main rope2=/tmp/addon-rope2.node > $OUT/ab.txt 2>&1
echo "== ab exit $? at $(( $(date +%s) - t0 )) s"; sed -n '/^build/,$p' $OUT/ab.txt; tar -czf $OUT/ab.tgz -C /tmp ab
