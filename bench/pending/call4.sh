#!/usr/bin/env bash
# #13: Nsight Compute's breakdown of one batch-1 decode step of the 8B shape at 4K (each kernel timed alone, DRAM bytes read), main's addon under auto against decode-next's under gemv and auto.
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/card.txt
t0=$(date +%s)
for v in main next; do xz -dc .device/next/addon-$v.node.xz > /tmp/addon-$v.node; done
if [ ! -f /tmp/llama8b/reference.json ]; then
  PYTHONUNBUFFERED=1 timeout 130 python3 tools/make_llama8b.py /tmp/llama8b > /tmp/make.log 2>&1
  echo "make_llama8b exit $? at $(( $(date +%s) - t0 )) s"; tail -2 /tmp/make.log
fi
for run in main:auto next:gemv next:auto; do
  v=${run%%:*}; g=${run#*:}
  LIGHTTRANSFER_ADDON=/tmp/addon-$v.node GEMMS=$g timeout 150 bash tools/gpu/profile_decode_step.sh /tmp/llama8b $OUT/ncu-$v > /tmp/ncu-$v-$g.txt 2>&1
  echo "== $v $g exit $? at $(( $(date +%s) - t0 )) s"; tail -22 /tmp/ncu-$v-$g.txt
done
echo "total $(( $(date +%s) - t0 )) s"
