#!/usr/bin/env bash
# #13: cached tiles with the default page size read each page's table entry once per thread: tests, kernel rows against the previous commit, sanitizers, the GPU suite.
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/card.txt
t0=$(date +%s)
jest="node node_modules/jest/bin/jest.js"
addon=build/Release/lighttransfer.node
xz -dc .device/addon-before.node.xz > /tmp/before.node; cp $addon /tmp/after.node
timeout 100 $jest --selectProjects gpu --ci test/gpu/kernels-prefill.test.ts > $OUT/kernels-prefill-tests.txt 2>&1; echo "prefill tests exit $?"; grep -E "^Tests:|✕" $OUT/kernels-prefill-tests.txt | head
for v in after before after; do
  cp /tmp/$v.node $addon
  timeout 80 node dist/bench/kernels.js --device cuda:0 --only prefill > $OUT/kernels-prefill-$v.txt 2>&1; echo "kernels $v exit $?"; grep -E "2nd half" $OUT/kernels-prefill-$v.txt
done
cp /tmp/after.node $addon
echo "at $(( $(date +%s) - t0 )) s"
timeout 100 compute-sanitizer --tool racecheck --error-exitcode 9 --target-processes all $jest --selectProjects gpu --ci -i test/gpu/kernels-prefill.test.ts -t "paged prefix" > $OUT/racecheck.txt 2>&1
echo "racecheck exit $?"; grep -E "RACECHECK SUMMARY|ERROR SUMMARY|^Tests:" $OUT/racecheck.txt | tail -3
timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 --target-processes all $jest --selectProjects gpu --ci -i test/gpu/kernels-prefill.test.ts -t "paged prefix" > $OUT/memcheck.txt 2>&1
echo "memcheck exit $?"; grep -E "ERROR SUMMARY|^Tests:" $OUT/memcheck.txt | tail -3
echo "at $(( $(date +%s) - t0 )) s"
timeout 280 $jest --selectProjects gpu --ci > $OUT/gpu-suite.txt 2>&1; echo "gpu suite exit $?"
grep -E "^Tests:|^Test Suites:" $OUT/gpu-suite.txt; grep -E "✕" $OUT/gpu-suite.txt | head
echo "total $(( $(date +%s) - t0 )) s"
