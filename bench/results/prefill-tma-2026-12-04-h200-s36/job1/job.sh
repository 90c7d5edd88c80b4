#!/usr/bin/env bash
# #13: prefill attention with Q and K/V through the copy engine (TMA), against K/V only by TMA and against cp.async, same job, 5 rounds in turns.
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/card.txt
t0=$(date +%s)
xz -dc .device/lp-tma.so.xz > /tmp/lp-tma.so; xz -dc .device/lp-cp.so.xz > /tmp/lp-cp.so; xz -dc .device/lp-tmakv.so.xz > /tmp/lp-tmakv.so
PYTHONUNBUFFERED=1 timeout 520 python3 tools/gpu/prefill_check.py --lib /tmp/lp-tma.so --alt-lib tmakv=/tmp/lp-tmakv.so --alt-lib cpasync=/tmp/lp-cp.so --out $OUT/prefill \
  --batches 1,4 --lengths 4096,8192,16384,32768 --rounds 5 > $OUT/prefill.txt 2>&1
echo "prefill check exit $? at $(( $(date +%s) - t0 )) s"; grep -E "correctness|FAILED" $OUT/prefill.txt | head -5
cat $OUT/prefill/prefill.md 2>/dev/null | head -60
