#!/usr/bin/env bash
# For the next GPU session (#13), call 2 of 2: how much of a whole prefill its kernels account for, at 4K and 16K (main).
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
t0=$(date +%s)
mkdir -p build/Release && xz -dc addons/small.node.xz > build/Release/lighttransfer.node
PYTHONUNBUFFERED=1 timeout 90 python3 tools/make_llama8b.py /tmp/llama8b > /tmp/make.log 2>&1; echo "make exit $? at $(( $(date +%s) - t0 )) s"
for n in 4096 16384; do
  TOKENS=$n timeout 200 bash tools/gpu/profile_prefill_kernels.sh /tmp/llama8b $OUT/prefill-kernels > $OUT/prefill-kernels-$n.txt 2>&1
  echo "== prefill kernels $n exit $? at $(( $(date +%s) - t0 )) s"; grep -E "prefill [0-9]|kernels," $OUT/prefill-kernels-$n.txt; sed -n '/^kernel /,+10p' $OUT/prefill-kernels-$n.txt
done
