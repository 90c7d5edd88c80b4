#!/usr/bin/env bash
# #13, job 9: a full cache's prefix of 16-token pages through the copy engine too (addon "paged") against the
# committed addon ("tma", cp.async for paged calls): racecheck and memcheck over the prefill kernel tests, the
# kernel benchmark's prefill rows for each, then the whole GPU suite on "paged".
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz $OUT paged=.device/addon-paged.xz tma=.device/addon-tma.xz
jest="node node_modules/jest/bin/jest.js"
export LIGHTTRANSFER_ADDON=$ADDONS/paged.node
timeout 100 compute-sanitizer --tool racecheck --error-exitcode 9 --target-processes all $jest --selectProjects gpu --ci -i test/gpu/kernels-prefill.test.ts > $OUT/racecheck.txt 2>&1
echo "racecheck exit $?"; grep -E "RACECHECK SUMMARY|^Tests:|✕" $OUT/racecheck.txt | tail -5
timeout 100 compute-sanitizer --tool memcheck --error-exitcode 9 --target-processes all $jest --selectProjects gpu --ci -i test/gpu/kernels-prefill.test.ts > $OUT/memcheck.txt 2>&1
echo "memcheck exit $?"; grep -E "ERROR SUMMARY|^Tests:" $OUT/memcheck.txt | tail -2
stamp "bench"
for b in tma paged; do
  LIGHTTRANSFER_ADDON=$ADDONS/$b.node timeout 60 node dist/bench/kernels.js --device cuda:0 --only prefill >> $OUT/bench-$b.txt 2>&1
  echo "== $b"; grep -E "prefill (causal|streaming|2nd half)" $OUT/bench-$b.txt | head -14
  stamp "$b"
done
LIGHTTRANSFER_ADDON=$ADDONS/paged.node timeout 200 $jest --selectProjects gpu --ci > $OUT/gpu-suite.txt 2>&1
echo "gpu rc $?"; grep -E "^Tests:|^Test Suites:|✕" $OUT/gpu-suite.txt | head -20
stamp "done"
