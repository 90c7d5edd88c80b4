#!/usr/bin/env bash
# Session 44 (prepared, not run: no card), job 1: the whole GPU suite and the exclusive tests on
# session 43's native code (addon-s44: the cancel token, the overlap checks, checkGroup), then
# memcheck over the launch-ahead, handle, pending-read, async-cancel and attention_bias tests.
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz $OUT main=.device/addon-s44.xz
export LIGHTTRANSFER_ADDON=$ADDONS/main.node
stamp "gpu suite"
timeout 330 node node_modules/jest/bin/jest.js --selectProjects gpu --ci > $OUT/gpu.txt 2>&1
echo "gpu rc $?"
grep -E "✕|^Tests:|^Time:|●|failed to exit" $OUT/gpu.txt | head -30
stamp "exclusive"
timeout 60 node node_modules/jest/bin/jest.js --selectProjects gpu-exclusive --ci > $OUT/exclusive.txt 2>&1
echo "exclusive rc $?"
grep -E "✕|^Tests:|●" $OUT/exclusive.txt | head -10
jest="node node_modules/jest/bin/jest.js --selectProjects gpu --ci --runInBand"
stamp "memcheck"
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 $jest test/gpu/session-reliability.test.ts test/gpu/decode-graph.test.ts test/gpu/async-indices.test.ts -t "launched|read handle|reads that do not wait|aborted|async CUDA" > $OUT/memcheck.txt 2>&1
echo "memcheck rc $?"; grep -E "ERROR SUMMARY|^Tests:" $OUT/memcheck.txt
stamp "done"
