#!/usr/bin/env bash
# Session 37, job 4: after the graph path forgets its rows on a refused launch: the reliability
# and decode-graph GPU tests, three times (fresh random inputs each time).
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz /tmp/o main=.device/addon-main.xz
mkdir -p /tmp/o/tests
for i in 1 2 3; do
  stamp "run $i"
  LIGHTTRANSFER_ADDON=$ADDONS/main.node timeout 100 node node_modules/jest/bin/jest.js --selectProjects gpu --ci --verbose \
    test/gpu/session-reliability.test.ts test/gpu/decode-graph.test.ts > /tmp/o/tests/run$i.txt 2>&1
  echo "run $i rc $?"; grep -E "✕|Tests:|seed" /tmp/o/tests/run$i.txt | head -10
done
grep -E "✓|✕" /tmp/o/tests/run1.txt | grep -i "fail\|refused" | head
(cd /tmp/o && tar -cJf "$OUT/job4.tar.xz" tests card.txt)
stamp "done"
