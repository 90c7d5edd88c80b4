#!/usr/bin/env bash
# Session 37, job 10 (as job 8, after the review mend f5c5ed5):
# the GPU hybrid, session-reliability and decode-graph tests.
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz /tmp/o main=.device/addon-main.xz
mkdir -p /tmp/o/tests
stamp "tests"
LIGHTTRANSFER_ADDON=$ADDONS/main.node timeout 200 node node_modules/jest/bin/jest.js --selectProjects gpu --ci \
  test/gpu/hybrid.test.ts test/gpu/session-reliability.test.ts test/gpu/decode-graph.test.ts test/gpu/logprobs.test.ts \
  > /tmp/o/tests/jest.txt 2>&1
echo "tests rc $?"; grep -E "^(PASS|FAIL)|^Tests:|✕" /tmp/o/tests/jest.txt | head -20
(cd /tmp/o && tar -cJf "$OUT/job10.tar.xz" tests card.txt)
stamp "done"
