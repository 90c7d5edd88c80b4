#!/usr/bin/env bash
# Branch review-fixes (on main dd248bd): the GPU tests of the graph and decode attention on it.
# Carry .device (node.xz, nm-tests.tar.xz, env.sh, addon-s32-review.xz) and dist (the branch's).
set -u
source .device/env.sh
tar -xJf .device/nm-tests.tar.xz
mkdir -p /tmp/addons /tmp/o/tests
xz -dc .device/addon-s32-review.xz > /tmp/addons/review.node
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee /tmp/o/card.txt
LIGHTTRANSFER_ADDON=/tmp/addons/review.node timeout 150 node node_modules/jest/bin/jest.js --selectProjects gpu --ci \
  test/gpu/decode-graph.test.ts test/gpu/kernels-decode.test.ts test/gpu/async-indices.test.ts > /tmp/o/tests/jest.txt 2>&1
echo "tests rc $?"; grep -E "^(PASS|FAIL)|^Tests:|✕" /tmp/o/tests/jest.txt | head -20
(cd /tmp/o && tar -cJf "$OUT/tests.tar.xz" tests card.txt)
