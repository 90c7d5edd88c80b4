#!/usr/bin/env bash
# Session 37, job 3: the whole GPU suite (main's addon) with the decode-step rollback and its
# tests (test/gpu/session-reliability.test.ts: a hook failing mid-step, a refused graph launch,
# a session whose decode step fails mid-turn).
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz /tmp/o main=.device/addon-main.xz
mkdir -p /tmp/o/tests
stamp "suite"
LIGHTTRANSFER_ADDON=$ADDONS/main.node timeout 420 node node_modules/jest/bin/jest.js --selectProjects gpu --ci \
  > /tmp/o/tests/jest.txt 2>&1
echo "suite rc $?"; grep -E "^(PASS|FAIL)|^Tests:|✕" /tmp/o/tests/jest.txt | head -30
LIGHTTRANSFER_ADDON=$ADDONS/main.node timeout 60 node node_modules/jest/bin/jest.js --selectProjects gpu --ci --verbose \
  test/gpu/session-reliability.test.ts > /tmp/o/tests/reliability.txt 2>&1
echo "reliability rc $?"; grep -E "✓|✕|Tests:" /tmp/o/tests/reliability.txt | head -30
(cd /tmp/o && tar -cJf "$OUT/job3.tar.xz" tests card.txt)
stamp "done"
