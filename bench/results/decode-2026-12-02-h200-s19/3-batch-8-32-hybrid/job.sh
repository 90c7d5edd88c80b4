#!/usr/bin/env bash
# (#13) No regression elsewhere from qkv-rope (bca4dba's native code = rope2): batch 8 and 32 decode steps, main against
# rope2 in turns (ABBA), the hybrid (50% lazy) throughput against full at 4K and 32K on rope2, and the linear section of
# the kernel bench on rope2 (q|k|v plain against norm + ropeAppendKv in graph replays).
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
t0=$(date +%s)
for v in main rope2; do xz -dc addons/$v.node.xz > /tmp/addon-$v.node; done
tar -xJf addons/dist-main.tar.xz && tar -xJf addons/dist-rope.tar.xz
mkdir -p build/Release && cp /tmp/addon-rope2.node build/Release/lighttransfer.node
PYTHONUNBUFFERED=1 timeout 90 python3 tools/make_llama8b.py /tmp/llama8b > /tmp/make.log 2>&1; echo "make exit $? at $(( $(date +%s) - t0 )) s"
ROUNDS=1 BATCHES=8,32 timeout 170 bash tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/ab main=/tmp/addon-main.node,dist-main rope2=/tmp/addon-rope2.node > $OUT/ab.txt 2>&1
echo "== ab exit $? at $(( $(date +%s) - t0 )) s"; sed -n '/^build/,$p' $OUT/ab.txt; tar -czf $OUT/ab.tgz -C /tmp ab
timeout 110 node dist/bench/hybrid-throughput.js --model /tmp/llama8b --kv-memory 40GiB --contexts 4096,32768 \
  --out $OUT/hybrid-throughput.json > $OUT/hybrid.txt 2>&1
echo "== hybrid exit $? at $(( $(date +%s) - t0 )) s"; tail -8 $OUT/hybrid.txt
timeout 70 node dist/bench/kernels.js --device cuda:0 --only linear > $OUT/linear-rope2.txt 2>&1
echo "== linear exit $? at $(( $(date +%s) - t0 )) s"; grep -E "n=6144|n=28672" $OUT/linear-rope2.txt | grep gemv
