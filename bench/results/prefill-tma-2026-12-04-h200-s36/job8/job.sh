#!/usr/bin/env bash
# #13, job 8: compute-sanitizer (racecheck, memcheck) over the prefill kernel tests and the exclusive GPU tests on the
# addon with the copy-engine kernel; then end-to-end prefill of the 8B shape against transformers at 4K and 16K.
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz $OUT tma=.device/addon-tma.xz
export LIGHTTRANSFER_ADDON=$ADDONS/tma.node
jest="node node_modules/jest/bin/jest.js"
timeout 150 compute-sanitizer --tool racecheck --error-exitcode 9 --target-processes all $jest --selectProjects gpu --ci -i test/gpu/kernels-prefill.test.ts > $OUT/racecheck.txt 2>&1
echo "racecheck exit $?"; grep -E "RACECHECK SUMMARY|^Tests:" $OUT/racecheck.txt | tail -2
timeout 130 compute-sanitizer --tool memcheck --error-exitcode 9 --target-processes all $jest --selectProjects gpu --ci -i test/gpu/kernels-prefill.test.ts > $OUT/memcheck.txt 2>&1
echo "memcheck exit $?"; grep -E "ERROR SUMMARY|^Tests:" $OUT/memcheck.txt | tail -2
timeout 100 $jest --selectProjects gpu-exclusive --ci > $OUT/exclusive.txt 2>&1
echo "exclusive rc $?"; grep -E "^Tests:|✕" $OUT/exclusive.txt | head
stamp "e2e"
CONTEXTS=4096,16384 timeout 240 tools/gpu/run_prefill_e2e.sh $OUT/e2e > $OUT/e2e.txt 2>&1
echo "e2e rc $?"; grep -vE "^\s*$" $OUT/e2e.txt | tail -15
stamp "done"
