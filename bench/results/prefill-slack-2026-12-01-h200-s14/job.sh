#!/usr/bin/env bash
# #13: the committed wgmma kernel (running-max slack): float64 check and SDPA side by side in 5 alternating rounds with the extras (streaming, fused ratio); GPU suite; prefill tests under racecheck and memcheck.
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/card.txt
t0=$(date +%s)
jest="node node_modules/jest/bin/jest.js"
xz -dc .device/libltprefill.so.xz > /tmp/libltprefill.so
PYTHONUNBUFFERED=1 timeout 240 python3 tools/gpu/prefill_check.py --lib /tmp/libltprefill.so --out $OUT/prefill \
  --batches 1,4 --lengths 4096,8192,16384,32768 --rounds 5 > $OUT/prefill.txt 2>&1
echo "prefill check exit $? at $(( $(date +%s) - t0 )) s"; grep -E "correctness|^B=" $OUT/prefill.txt | cut -c1-200; grep -iE "streaming.*32768|32768.*stream" $OUT/prefill.txt | head -3
timeout 200 $jest --selectProjects gpu --ci > $OUT/gpu-suite.txt 2>&1; echo "gpu suite exit $? at $(( $(date +%s) - t0 )) s"
grep -E "^Tests:|^Test Suites:" $OUT/gpu-suite.txt; grep -E "✕" $OUT/gpu-suite.txt | head
timeout 120 compute-sanitizer --tool racecheck --error-exitcode 9 --target-processes all $jest --selectProjects gpu --ci -i test/gpu/kernels-prefill.test.ts > $OUT/racecheck.txt 2>&1
echo "racecheck exit $?"; grep -E "RACECHECK SUMMARY|^Tests:" $OUT/racecheck.txt | tail -2
timeout 100 compute-sanitizer --tool memcheck --error-exitcode 9 --target-processes all $jest --selectProjects gpu --ci -i test/gpu/kernels-prefill.test.ts > $OUT/memcheck.txt 2>&1
echo "memcheck exit $?"; grep -E "ERROR SUMMARY|^Tests:" $OUT/memcheck.txt | tail -2
echo "total $(( $(date +%s) - t0 )) s"
