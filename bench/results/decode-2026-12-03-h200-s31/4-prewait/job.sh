#!/usr/bin/env bash
# Branch gemv-prewait-loads (its first commit, LT_EXP_PREWAIT_LOADS 1: a GEMV block loads its
# first step of weights into registers before its wait) against main's native code; then the
# decode-graph and model GPU tests on it. Carry .device/node.xz, .device/nm-tests.tar.xz,
# .device/env.sh, .device/addon-main-s28.xz, .device/addon-s31-prewait.xz, dist (main's).
set -u
start=$(date +%s)
t() { echo "[$(( $(date +%s) - start )) s] $*"; }
source .device/env.sh
tar -xJf .device/nm-tests.tar.xz
mkdir -p /tmp/addons /tmp/o/tests
xz -dc .device/addon-main-s28.xz > /tmp/addons/main.node
xz -dc .device/addon-s31-prewait.xz > /tmp/addons/prewait.node
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee /tmp/o/card.txt
python3 tools/make_llama8b.py /tmp/llama8b > /tmp/o/make8b.txt 2>&1; echo "make8b rc $?" | tee -a /tmp/o/make8b.txt
t "ab"
ROUNDS=3 CONTEXTS=4096,16384 timeout 240 tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/o/ab \
  main=/tmp/addons/main.node prewait=/tmp/addons/prewait.node
echo "ab rc $?"
(cd /tmp/o && tar -cJf "$OUT/ab.tar.xz" ab card.txt make8b.txt)
t "tests"
LIGHTTRANSFER_ADDON=/tmp/addons/prewait.node timeout 200 node node_modules/jest/bin/jest.js --selectProjects gpu --ci \
  test/gpu/decode-graph.test.ts test/gpu/model.test.ts > /tmp/o/tests/jest.txt 2>&1
echo "tests rc $?"; grep -E "^(PASS|FAIL)|^Tests:|✕" /tmp/o/tests/jest.txt | head
(cd /tmp/o && tar -cJf "$OUT/tests.tar.xz" tests)
t "done"
