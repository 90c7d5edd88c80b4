#!/usr/bin/env bash
# Session 38, job 4: compute-sanitizer memcheck over the launch-ahead and pending-read GPU tests,
# then the model decode benchmark at batches 1, 8 and 32 (4K and 16K): the graph step, the
# launched-ahead step, and Session.generate with and without launching ahead.
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz $OUT ahead=.device/addon-ahead.xz
export LIGHTTRANSFER_ADDON=$ADDONS/ahead.node
jest="node node_modules/jest/bin/jest.js --selectProjects gpu --ci --runInBand"
stamp "memcheck"
timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 $jest test/gpu/session-reliability.test.ts -t "launched ahead" > $OUT/memcheck-ahead.txt 2>&1
echo "memcheck launch-ahead rc $?"; grep -E "ERROR SUMMARY|^Tests:" $OUT/memcheck-ahead.txt
timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 $jest test/gpu/decode-graph.test.ts -t "reads that do not wait|decode steps replayed" > $OUT/memcheck-reads.txt 2>&1
echo "memcheck reads rc $?"; grep -E "ERROR SUMMARY|^Tests:" $OUT/memcheck-reads.txt
checkpoint8b /tmp/llama8b
stamp "bench"
timeout 300 node dist/bench/model-decode.js /tmp/llama8b --batches 1,8,32 --contexts 4096,16384 --steps 48 --out $OUT/ours.json --md $OUT/table.md > $OUT/bench.txt 2>&1
echo "bench rc $?"
tail -12 $OUT/bench.txt
stamp "done"
