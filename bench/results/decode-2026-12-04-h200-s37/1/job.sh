#!/usr/bin/env bash
# Session 37, job 1: decode attention's split arrival as one acq_rel atomic after the CTA barrier
# (acq) against main's __threadfence in every thread around a relaxed atomicInc (main): batch-1
# step in turns (ABBA x 2); then the decode GPU tests on acq.
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz /tmp/o main=.device/addon-main.xz acq=.device/addon-acqrel.xz
mkdir -p /tmp/o/tests
checkpoint8b /tmp/llama8b
stamp "ab"
ROUNDS=2 timeout 330 tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/o/ab main=$ADDONS/main.node acq=$ADDONS/acq.node
echo "ab rc $?"
stamp "tests"
LIGHTTRANSFER_ADDON=$ADDONS/acq.node timeout 150 node node_modules/jest/bin/jest.js --selectProjects gpu \
  --ci test/gpu/kernels-decode.test.ts test/gpu/decode-graph.test.ts > /tmp/o/tests/jest.txt 2>&1
echo "tests rc $?"; grep -E "^(PASS|FAIL)|^Tests:|✕" /tmp/o/tests/jest.txt | head -20
(cd /tmp/o && tar -cJf "$OUT/job1.tar.xz" ab tests card.txt make8b.txt)
stamp "done"
