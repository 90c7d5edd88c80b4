#!/usr/bin/env bash
# Session 37, job 2: decode attention, batch-1 step in turns (ABCD DCBA x 3): main; acq (the
# split arrival as one acq_rel atomic); x = acq + every partial of the merge in one round of
# loads with the log-sums, under LT_ATTN_EARLY=0 and =1 (1: the length and the first page ids
# read before the wait for the kernel ahead, q after it). Then the decode GPU tests on x, early.
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz /tmp/o main=.device/addon-main.xz acq=.device/addon-acqrel.xz x=.device/addon-x.xz
mkdir -p /tmp/o/tests
checkpoint8b /tmp/llama8b
stamp "ab"
ROUNDS=3 timeout 330 tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/o/ab main=$ADDONS/main.node acq=$ADDONS/acq.node \
  x0=$ADDONS/x.node,LT_ATTN_EARLY=0 x1=$ADDONS/x.node,LT_ATTN_EARLY=1
echo "ab rc $?"
stamp "tests"
LT_ATTN_EARLY=1 LIGHTTRANSFER_ADDON=$ADDONS/x.node timeout 150 node node_modules/jest/bin/jest.js --selectProjects gpu \
  --ci test/gpu/kernels-decode.test.ts test/gpu/decode-graph.test.ts > /tmp/o/tests/jest.txt 2>&1
echo "tests rc $?"; grep -E "^(PASS|FAIL)|^Tests:|✕" /tmp/o/tests/jest.txt | head -20
(cd /tmp/o && tar -cJf "$OUT/job2.tar.xz" ab tests card.txt make8b.txt)
stamp "done"
