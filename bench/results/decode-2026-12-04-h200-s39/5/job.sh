#!/usr/bin/env bash
# Session 39, job 5: the CPU decode attention in blocks (online softmax) against the CUDA kernels:
# the GPU tests that compare them (kernels-decode, decode-graph, hybrid, session-reliability).
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz $OUT main=.device/addon-s39.xz
export LIGHTTRANSFER_ADDON=$ADDONS/main.node
stamp "tests"
timeout 300 node node_modules/jest/bin/jest.js --selectProjects gpu --ci test/gpu/kernels-decode.test.ts test/gpu/decode-graph.test.ts test/gpu/hybrid.test.ts test/gpu/session-reliability.test.ts > $OUT/tests.txt 2>&1
echo "tests rc $?"
grep -E "✕|^Tests:|^Time:|●" $OUT/tests.txt | head -20
stamp "done"
