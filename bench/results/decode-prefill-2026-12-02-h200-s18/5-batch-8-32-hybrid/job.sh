#!/usr/bin/env bash
# (#13) No regression elsewhere from decode-small: batch 8 and 32 decode steps, main (pdl2) against small in turns (ABBA),
# and the hybrid (50% lazy) throughput against full at 4K and 32K on small.
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
t0=$(date +%s)
for v in pdl2 small; do xz -dc addons/$v.node.xz > /tmp/addon-$v.node; done
mkdir -p build/Release && cp /tmp/addon-small.node build/Release/lighttransfer.node
PYTHONUNBUFFERED=1 timeout 90 python3 tools/make_llama8b.py /tmp/llama8b > /tmp/make.log 2>&1; echo "make exit $? at $(( $(date +%s) - t0 )) s"
ROUNDS=1 BATCHES=8,32 timeout 170 bash tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/ab main=/tmp/addon-pdl2.node small=/tmp/addon-small.node > $OUT/ab.txt 2>&1
echo "== ab exit $? at $(( $(date +%s) - t0 )) s"; sed -n '/^build/,$p' $OUT/ab.txt; tar -czf $OUT/ab.tgz -C /tmp ab
timeout 110 node dist/bench/hybrid-throughput.js --model /tmp/llama8b --kv-memory 40GiB --contexts 4096,32768 \
  --out $OUT/hybrid-throughput.json > $OUT/hybrid.txt 2>&1
echo "== hybrid exit $? at $(( $(date +%s) - t0 )) s"; tail -8 $OUT/hybrid.txt
