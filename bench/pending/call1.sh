#!/usr/bin/env bash
# Python only (no node). #13: (a) shapes of the small-batch GEMV (branch gemv-wide, LT_GEMV_ROWS x LT_GEMV_INFLIGHT) and main's GEMV ("old") on the Llama-3-8B decode projections at 1 and 2 rows beside cuBLASLt, float64 check of each build first; (b) the wgmma prefill kernel with 2^x on the FMA pipe for every 2nd / 4th column group (branch exp2-fma): float64 check of each build, then SDPA and the committed kernel side by side, 3 rounds.
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/card.txt
t0=$(date +%s)
args=()
for v in old r4u2 r4u1 r4u4 r8u1 r8u2 r2u2 r16u1 r4u2b3 r4u1b4; do
  xz -dc .device/gv/lib_$v.so.xz > /tmp/lib_$v.so; args+=(--lib "$v=/tmp/lib_$v.so")
done
PYTHONUNBUFFERED=1 timeout 200 python3 tools/gpu/gemv_variants.py "${args[@]}" --rows 1,2 --rounds 3 > $OUT/gemv-variants.txt 2>&1
echo "gemv variants exit $? at $(( $(date +%s) - t0 )) s"; grep -E "^check|^FAIL|^\|" $OUT/gemv-variants.txt | head -24
for v in 0 2 4; do xz -dc .device/exp2/libltprefill_p$v.so.xz > /tmp/libltprefill_p$v.so; done
for v in 2 4; do
  PYTHONUNBUFFERED=1 timeout 100 python3 tools/gpu/prefill_check.py --lib /tmp/libltprefill_p$v.so --out /tmp/check_p$v --skip-bench > $OUT/check_p$v.txt 2>&1
  echo "p$v check exit $? at $(( $(date +%s) - t0 )) s"; grep -E "^correctness|^FAIL" $OUT/check_p$v.txt | cut -c1-220 | head -5
done
PYTHONUNBUFFERED=1 timeout 200 python3 tools/gpu/prefill_check.py --lib /tmp/libltprefill_p0.so --out $OUT/ab --skip-check --skip-extras \
  --alt-lib p2=/tmp/libltprefill_p2.so --alt-lib p4=/tmp/libltprefill_p4.so \
  --batches 1 --lengths 4096,8192,16384,32768 --rounds 3 > $OUT/ab.txt 2>&1
echo "prefill A/B exit $? at $(( $(date +%s) - t0 )) s"; grep -E "^B=" $OUT/ab.txt | cut -c1-330
echo "total $(( $(date +%s) - t0 )) s"
