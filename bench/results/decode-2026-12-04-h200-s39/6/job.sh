#!/usr/bin/env bash
# Session 39, job 6: the whole GPU suite and the exclusive tests on the final code (b24d052: after the blocked CPU decode attention, the distinct-ring-pages check, the async rejection value) - earlier: (the review mend; tensors type-tagged, ring check, offsets, unknown options; graph
# and read handles type-tagged in the addon, the hybrid policy's kept queries grown as needed,
# launched steps' hook errors and batch copy, the server's close and option checks), then
# memcheck over the new decode-graph handle test and the launch-ahead tests.
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
timeout 100 compute-sanitizer --tool memcheck --error-exitcode 9 $jest test/gpu/session-reliability.test.ts test/gpu/decode-graph.test.ts -t "launched|read handle|reads that do not wait" > $OUT/memcheck.txt 2>&1
echo "memcheck rc $?"; grep -E "ERROR SUMMARY|^Tests:" $OUT/memcheck.txt
stamp "done"
