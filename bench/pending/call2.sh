#!/usr/bin/env bash
# #13, branch decode-next (gemv-wide + decode-pdl), never run before: the whole GPU suite on its addon (with the prefill tests' fourteenth-session cases and the new chained rope + attention test), then compute-sanitizer: racecheck over the new prefill cases, memcheck over the decode kernels and the linear (GEMV) tests, racecheck over the linear tests.
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/card.txt
t0=$(date +%s)
jest="node node_modules/jest/bin/jest.js"
mkdir -p build/Release && xz -dc .device/next/addon-next.node.xz > build/Release/lighttransfer.node
timeout 230 $jest --selectProjects gpu --ci > $OUT/gpu-suite.txt 2>&1
echo "gpu suite exit $? at $(( $(date +%s) - t0 )) s"; grep -E "^Tests:|^Test Suites:" $OUT/gpu-suite.txt; grep -E "✕" $OUT/gpu-suite.txt | head -12
san() { # tool file filter label
  timeout 80 compute-sanitizer --tool $1 --error-exitcode 9 --target-processes all $jest --selectProjects gpu --ci -i $2 -t "$3" > $OUT/$4.txt 2>&1
  echo "$4 exit $? at $(( $(date +%s) - t0 )) s"; grep -E "SUMMARY|^Tests:" $OUT/$4.txt | tail -2
}
san racecheck test/gpu/kernels-prefill.test.ts "rising|paged prefix" racecheck-prefill
san memcheck test/gpu/kernels-decode.test.ts "decode" memcheck-decode
san memcheck test/gpu/model.test.ts "linear" memcheck-linear
san racecheck test/gpu/model.test.ts "linear" racecheck-linear
echo "total $(( $(date +%s) - t0 )) s"
