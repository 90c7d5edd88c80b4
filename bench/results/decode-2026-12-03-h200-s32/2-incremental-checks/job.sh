#!/usr/bin/env bash
# Branch graph-incremental-checks: the decode-graph GPU tests on it, then main's native code
# against it on the model's decode step at batch 1 and 32, 4K and 16K (ABBA x 2). Carry .device
# (node.xz, nm-tests.tar.xz, env.sh, addon-main-s32.xz, addon-s32-inc.xz) and dist (main's = the
# branch's TypeScript).
set -u
start=$(date +%s)
t() { echo "[$(( $(date +%s) - start )) s] $*"; }
source .device/env.sh
tar -xJf .device/nm-tests.tar.xz
mkdir -p /tmp/addons /tmp/o/tests
xz -dc .device/addon-main-s32.xz > /tmp/addons/main.node
xz -dc .device/addon-s32-inc.xz > /tmp/addons/inc.node
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee /tmp/o/card.txt
(python3 tools/make_llama8b.py /tmp/llama8b > /tmp/o/make8b.txt 2>&1; echo "make8b rc $?" >> /tmp/o/make8b.txt) &
mk=$!
t "tests on inc"
LIGHTTRANSFER_ADDON=/tmp/addons/inc.node timeout 100 node node_modules/jest/bin/jest.js --selectProjects gpu --ci \
  test/gpu/decode-graph.test.ts > /tmp/o/tests/jest.txt 2>&1
echo "tests rc $?"; grep -E "^(PASS|FAIL)|^Tests:|✕" /tmp/o/tests/jest.txt | head
(cd /tmp/o && tar -cJf "$OUT/tests.tar.xz" tests card.txt)
wait $mk; tail -1 /tmp/o/make8b.txt
t "ab"
ROUNDS=2 BATCHES=1,32 CONTEXTS=4096,16384 timeout 420 tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/o/ab \
  main=/tmp/addons/main.node inc=/tmp/addons/inc.node
echo "ab rc $?"
grep -h "batch 32 context" /tmp/o/ab/ab-*.txt | cut -c1-160
(cd /tmp/o && tar -cJf "$OUT/ab.tar.xz" ab make8b.txt)
t "done"
