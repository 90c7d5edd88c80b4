#!/usr/bin/env bash
# #13: the persistent wgmma prefill kernel (one block per SM takes items in turn): float64 check, SDPA and the previous build side by side in 5 rounds, extras; if correct, the GPU suite and the prefill tests under racecheck and memcheck.
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/card.txt
t0=$(date +%s)
jest="node node_modules/jest/bin/jest.js"
for v in libltprefill libltprefill_prev; do xz -dc .device/$v.so.xz > /tmp/$v.so; done
PYTHONUNBUFFERED=1 timeout 220 python3 tools/gpu/prefill_check.py --lib /tmp/libltprefill.so --alt-lib previous=/tmp/libltprefill_prev.so \
  --out $OUT/prefill --batches 1,4 --lengths 4096,8192,16384,32768 --rounds 5 > $OUT/prefill.txt 2>&1
rc=$?; echo "prefill check exit $rc at $(( $(date +%s) - t0 )) s"; grep -E "correctness|^B=|FAILED" $OUT/prefill.txt | head -40 | cut -c1-220; grep -E "^Streaming mask|fused ratio|overhead" $OUT/prefill.txt | head -4
[ $rc -ne 0 ] && { tail -5 $OUT/prefill.txt; exit 1; }
timeout 200 $jest --selectProjects gpu --ci > $OUT/gpu-suite.txt 2>&1; echo "gpu suite exit $? at $(( $(date +%s) - t0 )) s"
grep -E "^Tests:|^Test Suites:" $OUT/gpu-suite.txt; grep -E "✕" $OUT/gpu-suite.txt | head
timeout 100 compute-sanitizer --tool racecheck --error-exitcode 9 --target-processes all $jest --selectProjects gpu --ci -i test/gpu/kernels-prefill.test.ts > $OUT/racecheck.txt 2>&1
echo "racecheck exit $?"; grep -E "RACECHECK SUMMARY|^Tests:" $OUT/racecheck.txt | tail -2
timeout 80 compute-sanitizer --tool memcheck --error-exitcode 9 --target-processes all $jest --selectProjects gpu --ci -i test/gpu/kernels-prefill.test.ts > $OUT/memcheck.txt 2>&1
echo "memcheck exit $?"; grep -E "ERROR SUMMARY|^Tests:" $OUT/memcheck.txt | tail -2
echo "total $(( $(date +%s) - t0 )) s"
