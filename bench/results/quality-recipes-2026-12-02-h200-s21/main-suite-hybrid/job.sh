#!/usr/bin/env bash
# main (a4cd8aa) on the GPU: the suite (the review changes 1e3725e and a4cd8aa never ran on a GPU),
# then the hybrid throughput against full attention at 4K and 32K if time is left.
set -uo pipefail
t0=$(date +%s)
source job/env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
mkdir -p build/Release && xz -dc job/addon.node.xz > build/Release/lighttransfer.node
tar -xJf job/dist.tar.xz && tar -xJf job/deps-gpu.tar.xz
echo "unpacked at $(( $(date +%s) - t0 )) s"
timeout 170 node node_modules/jest/bin/jest.js --selectProjects gpu --ci > $OUT/gpu-suite-main.txt 2>&1
echo "gpu suite exit $? at $(( $(date +%s) - t0 )) s"; grep -E "^Tests:|^Test Suites:|^FAIL|^Time:" $OUT/gpu-suite-main.txt; grep -E "✕" $OUT/gpu-suite-main.txt | head -12
left=$(( 300 - ($(date +%s) - t0) ))
echo "$left s left for make + hybrid"
if (( left > 100 )); then
  PYTHONUNBUFFERED=1 timeout 80 python3 tools/make_llama8b.py /tmp/llama8b > $OUT/make.log 2>&1; echo "make exit $? at $(( $(date +%s) - t0 )) s"
  left=$(( 305 - ($(date +%s) - t0) ))
  timeout $left node dist/bench/hybrid-throughput.js --model /tmp/llama8b --kv-memory 40GiB --contexts 4096,32768 \
    --out $OUT/hybrid-throughput.json > $OUT/hybrid.txt 2>&1
  echo "== hybrid exit $? at $(( $(date +%s) - t0 )) s"; tail -8 $OUT/hybrid.txt
fi
