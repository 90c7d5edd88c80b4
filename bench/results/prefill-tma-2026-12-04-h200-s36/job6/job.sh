#!/usr/bin/env bash
# #13: the streaming mask's sink keys visited as a 16-key tile (TMA build) against the TMA build before it and the cp.async build.
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/card.txt
t0=$(date +%s)
for v in sink tma cp; do xz -dc .device/lp-$v.so.xz > /tmp/lp-$v.so; done
PYTHONUNBUFFERED=1 timeout 400 python3 tools/gpu/prefill_check.py --lib /tmp/lp-sink.so --alt-lib tma=/tmp/lp-tma.so --alt-lib cpasync=/tmp/lp-cp.so --out $OUT/prefill \
  --batches 1 --lengths 8192,32768 --rounds 5 > $OUT/prefill.txt 2>&1
echo "prefill check exit $? at $(( $(date +%s) - t0 )) s"; grep -E "correctness|FAILED" $OUT/prefill.txt | head -5
grep -E "streaming N=" $OUT/prefill.txt
cat $OUT/prefill/prefill.md 2>/dev/null | sed -n '/^| B/,/^$/p'
for v in sink tma; do echo "== $v"; python3 .device/streamcost.py /tmp/lp-$v.so; done 2>&1 | tee $OUT/streamcost.txt
