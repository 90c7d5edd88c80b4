#!/usr/bin/env bash
# #13: the wgmma kernel's mask from per-row limits (TMA build) against the TMA build before it and the cp.async build; streaming and causal in turns.
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/card.txt
t0=$(date +%s)
for v in mask tma cp; do xz -dc .device/lp-$v.so.xz > /tmp/lp-$v.so; done
PYTHONUNBUFFERED=1 timeout 400 python3 tools/gpu/prefill_check.py --lib /tmp/lp-mask.so --alt-lib tma=/tmp/lp-tma.so --alt-lib cpasync=/tmp/lp-cp.so --out $OUT/prefill \
  --batches 1 --lengths 8192,32768 --rounds 5 > $OUT/prefill.txt 2>&1
echo "prefill check exit $? at $(( $(date +%s) - t0 )) s"; grep -E "correctness|FAILED" $OUT/prefill.txt | head -5
grep -E "streaming N=" $OUT/prefill.txt
cat $OUT/prefill/prefill.md 2>/dev/null | sed -n '/^| B/,/^$/p'
