#!/usr/bin/env bash
# Session 39, job 1: the whole GPU suite and the exclusive tests on main (9e2fab3, the
# thirty-eighth session's final code), then memcheck over the launch-ahead tests (with the
# readback-failure tests the review's mend added) and the pending-read tests.
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz $OUT main=.device/addon-s39.xz
export LIGHTTRANSFER_ADDON=$ADDONS/main.node
stamp "gpu suite"
timeout 400 node node_modules/jest/bin/jest.js --selectProjects gpu --ci > $OUT/gpu.txt 2>&1
echo "gpu rc $?"
grep -E "✕|^Tests:|^Time:|●" $OUT/gpu.txt | head -30
stamp "exclusive"
timeout 60 node node_modules/jest/bin/jest.js --selectProjects gpu-exclusive --ci > $OUT/exclusive.txt 2>&1
echo "exclusive rc $?"
grep -E "✕|^Tests:|●" $OUT/exclusive.txt | head -10
jest="node node_modules/jest/bin/jest.js --selectProjects gpu --ci --runInBand"
stamp "memcheck"
timeout 100 compute-sanitizer --tool memcheck --error-exitcode 9 $jest test/gpu/session-reliability.test.ts -t "launched ahead" > $OUT/memcheck-ahead.txt 2>&1
echo "memcheck launch-ahead rc $?"; grep -E "ERROR SUMMARY|^Tests:" $OUT/memcheck-ahead.txt
stamp "done"
