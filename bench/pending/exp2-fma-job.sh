#!/usr/bin/env bash
# #13: the review's untested prefill kernel cases (rising scores, page sizes 256 and 4) and racecheck over them; then an A/B of exp2 on the FMA pipe for part of the softmax (every 2nd / 4th column group) against the committed kernel, float64 check of each variant and SDPA side by side.
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/card.txt
t0=$(date +%s)
jest="node node_modules/jest/bin/jest.js"
timeout 100 $jest --selectProjects gpu --ci test/gpu/kernels-prefill.test.ts > $OUT/kernels-prefill-tests.txt 2>&1; echo "prefill tests exit $? at $(( $(date +%s) - t0 )) s"
grep -E "^Tests:|✕" $OUT/kernels-prefill-tests.txt | head -12
timeout 90 compute-sanitizer --tool racecheck --error-exitcode 9 --target-processes all $jest --selectProjects gpu --ci -i test/gpu/kernels-prefill.test.ts -t "rising|paged prefix" > $OUT/racecheck.txt 2>&1
echo "racecheck exit $? at $(( $(date +%s) - t0 )) s"; grep -E "RACECHECK SUMMARY|^Tests:" $OUT/racecheck.txt | tail -2
for v in 0 2 4; do xz -dc .device/exp2/libltprefill_p$v.so.xz > /tmp/libltprefill_p$v.so; done
for v in 2 4; do
  PYTHONUNBUFFERED=1 timeout 150 python3 tools/gpu/prefill_check.py --lib /tmp/libltprefill_p$v.so --out /tmp/check_p$v --skip-bench > /tmp/check_p$v.txt 2>&1
  echo "p$v check exit $? at $(( $(date +%s) - t0 )) s"; grep -E "^correctness|^FAIL" /tmp/check_p$v.txt | cut -c1-220 | head -5
done
PYTHONUNBUFFERED=1 timeout 260 python3 tools/gpu/prefill_check.py --lib /tmp/libltprefill_p0.so --out $OUT/ab --skip-check --skip-extras \
  --alt-lib p2=/tmp/libltprefill_p2.so --alt-lib p4=/tmp/libltprefill_p4.so \
  --batches 1 --lengths 4096,8192,16384,32768 --rounds 3 > $OUT/ab.txt 2>&1
echo "ab exit $? at $(( $(date +%s) - t0 )) s"; grep -E "^B=" $OUT/ab.txt | cut -c1-330
echo "total $(( $(date +%s) - t0 )) s"
