#!/usr/bin/env bash
# Branch gemv-constant-weight (its first commit): the decode-graph and model GPU tests on it (with
# its own dist), then main's native code against it on the model's decode step at 4K, one ABBA
# round, as far as the device time left allows. Carry .device/node.xz, .device/nm-tests.tar.xz,
# .device/env.sh, .device/addon-main-s28.xz, .device/addon-s31-constw.xz, dist (the branch's).
set -u
start=$(date +%s)
t() { echo "[$(( $(date +%s) - start )) s] $*"; }
source .device/env.sh
tar -xJf .device/nm-tests.tar.xz
mkdir -p /tmp/addons /tmp/o/tests
xz -dc .device/addon-main-s28.xz > /tmp/addons/main.node
xz -dc .device/addon-s31-constw.xz > /tmp/addons/constw.node
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee /tmp/o/card.txt
(python3 tools/make_llama8b.py /tmp/llama8b > /tmp/o/make8b.txt 2>&1; echo "make8b rc $?" >> /tmp/o/make8b.txt) &
mk=$!
t "tests"
LIGHTTRANSFER_ADDON=/tmp/addons/constw.node timeout 200 node node_modules/jest/bin/jest.js --selectProjects gpu --ci \
  test/gpu/decode-graph.test.ts test/gpu/model.test.ts > /tmp/o/tests/jest.txt 2>&1
echo "tests rc $?"; grep -E "^(PASS|FAIL)|^Tests:|✕" /tmp/o/tests/jest.txt | head
(cd /tmp/o && tar -cJf "$OUT/tests.tar.xz" tests card.txt)
wait $mk; tail -1 /tmp/o/make8b.txt
t "ab"
ROUNDS=1 CONTEXTS=4096 timeout 120 tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/o/ab \
  main=/tmp/addons/main.node constw=/tmp/addons/constw.node
echo "ab rc $?"
(cd /tmp/o && tar -cJf "$OUT/ab.tar.xz" ab make8b.txt)
t "done"
