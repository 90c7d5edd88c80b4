#!/usr/bin/env bash
# Session 37, job 5: compute-sanitizer memcheck over the failed-decode-step tests on CUDA (a hook
# failing mid-step, a refused graph launch, a session whose step fails mid-turn) and the
# failed-prompt ones beside them: after a rollback the pages go back to the pool and the next
# steps rewrite the device's table rows.
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz /tmp/o main=.device/addon-main.xz
compute-sanitizer --version | tail -1
mkdir -p /tmp/o/memcheck
stamp "memcheck"
LIGHTTRANSFER_ADDON=$ADDONS/main.node timeout 400 compute-sanitizer --tool memcheck --error-exitcode 9 --target-processes all \
  node node_modules/jest/bin/jest.js --selectProjects gpu --ci -i --testTimeout=300000 \
  -t "failed decode step|fails mid-turn|failed later prompt|failed first prompt" test/gpu/session-reliability.test.ts \
  > /tmp/o/memcheck/reliability.log 2>&1
echo "memcheck rc $?"; grep -E "ERROR SUMMARY|^Tests:|✕" /tmp/o/memcheck/reliability.log | tail -5
(cd /tmp/o && tar -cJf "$OUT/job5.tar.xz" memcheck card.txt)
stamp "done"
