#!/usr/bin/env bash
# Session 37, job 6: the final code (main's native code, this session's dist): the whole GPU suite
# and the exclusive tests.
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz /tmp/o main=.device/addon-main.xz
mkdir -p /tmp/o/tests
stamp "suite"
LIGHTTRANSFER_ADDON=$ADDONS/main.node timeout 400 node node_modules/jest/bin/jest.js --selectProjects gpu --ci \
  > /tmp/o/tests/jest.txt 2>&1
echo "suite rc $?"; grep -E "^(PASS|FAIL)|^Tests:|✕" /tmp/o/tests/jest.txt | head -30
LIGHTTRANSFER_ADDON=$ADDONS/main.node timeout 120 node node_modules/jest/bin/jest.js --selectProjects gpu-exclusive --ci \
  > /tmp/o/tests/exclusive.txt 2>&1
echo "exclusive rc $?"; grep -E "^(PASS|FAIL)|^Tests:|✕" /tmp/o/tests/exclusive.txt | head
(cd /tmp/o && tar -cJf "$OUT/job6.tar.xz" tests card.txt)
stamp "done"
