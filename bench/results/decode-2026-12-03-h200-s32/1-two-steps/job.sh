#!/usr/bin/env bash
# Branch gemv-prewait-two-steps: main's native code against it on the model's decode step at 4K
# and 16K (ABBA x 3), then the new constantWeight test on main's addon, then decode-graph and
# model GPU tests on the branch. Carry .device (node.xz, nm-tests.tar.xz, env.sh,
# addon-main-s32.xz, addon-s32-two-steps.xz) and dist (main's = the branch's TypeScript).
set -u
start=$(date +%s)
t() { echo "[$(( $(date +%s) - start )) s] $*"; }
source .device/env.sh
tar -xJf .device/nm-tests.tar.xz
mkdir -p /tmp/addons /tmp/o/tests
xz -dc .device/addon-main-s32.xz > /tmp/addons/main.node
xz -dc .device/addon-s32-two-steps.xz > /tmp/addons/twosteps.node
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee /tmp/o/card.txt
t "make8b"
python3 tools/make_llama8b.py /tmp/llama8b > /tmp/o/make8b.txt 2>&1; echo "make8b rc $?" >> /tmp/o/make8b.txt
tail -1 /tmp/o/make8b.txt
t "ab"
ROUNDS=3 CONTEXTS=4096,16384 timeout 220 tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/o/ab \
  main=/tmp/addons/main.node twosteps=/tmp/addons/twosteps.node
echo "ab rc $?"
(cd /tmp/o && tar -cJf "$OUT/ab.tar.xz" ab make8b.txt card.txt)
t "tests on main"
LIGHTTRANSFER_ADDON=/tmp/addons/main.node timeout 80 node node_modules/jest/bin/jest.js --selectProjects gpu --ci \
  test/gpu/model.test.ts -t constantWeight > /tmp/o/tests/jest-main-constantWeight.txt 2>&1
echo "tests main rc $?"; grep -E "^Tests:|✕" /tmp/o/tests/jest-main-constantWeight.txt | head
t "tests on twosteps"
LIGHTTRANSFER_ADDON=/tmp/addons/twosteps.node timeout 230 node node_modules/jest/bin/jest.js --selectProjects gpu --ci \
  test/gpu/decode-graph.test.ts test/gpu/model.test.ts > /tmp/o/tests/jest.txt 2>&1
echo "tests rc $?"; grep -E "^(PASS|FAIL)|^Tests:|✕" /tmp/o/tests/jest.txt | head
(cd /tmp/o && tar -cJf "$OUT/tests.tar.xz" tests)
t "done"
