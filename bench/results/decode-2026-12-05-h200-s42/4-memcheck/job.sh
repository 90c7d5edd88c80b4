#!/usr/bin/env bash
# Session 42, job 4: memcheck over the tests of session 41's native changes (index tensors written
# through other views, async writers, reads through V8-owned buffers, readFile).
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz $OUT main=.device/addon-s41.xz
export LIGHTTRANSFER_ADDON=$ADDONS/main.node
jest="node node_modules/jest/bin/jest.js --selectProjects gpu --ci --runInBand"
stamp "memcheck"
timeout 420 compute-sanitizer --tool memcheck --error-exitcode 9 $jest test/gpu/async-indices.test.ts test/gpu/kernels-cache.test.ts test/gpu/read-file.test.ts > $OUT/memcheck.txt 2>&1
echo "memcheck rc $?"; grep -E "ERROR SUMMARY|^Tests:|✕" $OUT/memcheck.txt | head
stamp "done"
