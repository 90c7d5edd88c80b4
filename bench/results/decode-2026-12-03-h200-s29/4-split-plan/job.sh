#!/usr/bin/env bash
# Session 29, call 4: decode attention planned with one CTA per SM where two would leave each
# split fewer than 4 tiles ("plan"), against main: the decode GPU tests and memcheck on it, and the
# batch-1 step in turns at 2K-16K.
set -u
start=$(date +%s)
t() { echo "[$(( $(date +%s) - start )) s] $*"; }
source .device/env.sh
tar -xJf .device/nm-tests.tar.xz
mkdir -p build/Release /tmp/addons /tmp/o/tests
xz -dc .device/addon-main-s28.xz > /tmp/addons/main.node
xz -dc .device/addon-plan.xz > /tmp/addons/plan.node
cp /tmp/addons/plan.node build/Release/lighttransfer.node
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee /tmp/o/card.txt
(python3 tools/make_llama8b.py /tmp/llama8b > /tmp/o/make8b.txt 2>&1; echo "make8b rc $?" >> /tmp/o/make8b.txt) &
mk=$!
t "decode kernel and graph tests on plan"
LIGHTTRANSFER_ADDON=/tmp/addons/plan.node timeout 120 node node_modules/jest/bin/jest.js --selectProjects gpu --ci \
  test/gpu/kernels-decode.test.ts test/gpu/decode-graph.test.ts > /tmp/o/tests/jest-decode.txt 2>&1
echo "jest rc $?"; grep -E "^(PASS|FAIL)|^Tests:|✕" /tmp/o/tests/jest-decode.txt | head -20
wait $mk; tail -1 /tmp/o/make8b.txt
t "ab"
ROUNDS=2 CONTEXTS=2048,4096,6144,8192,16384 timeout 240 tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/o/ab main=/tmp/addons/main.node plan=/tmp/addons/plan.node
echo "ab rc $?"
(cd /tmp/o && tar -cJf "$OUT/ab.tar.xz" ab tests card.txt make8b.txt)
t "memcheck"
LIGHTTRANSFER_ADDON=/tmp/addons/plan.node timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 --target-processes all \
  node node_modules/jest/bin/jest.js --selectProjects gpu --ci test/gpu/kernels-decode.test.ts > /tmp/o/memcheck.txt 2>&1
echo "memcheck rc $?"; grep -E "^Tests:|ERROR SUMMARY" /tmp/o/memcheck.txt
cp /tmp/o/memcheck.txt "$OUT/"
t "model tests"
if [ $(( $(date +%s) - start )) -lt 330 ]; then
  LIGHTTRANSFER_ADDON=/tmp/addons/plan.node timeout 200 node node_modules/jest/bin/jest.js --selectProjects gpu --ci \
    test/gpu/model.test.ts > /tmp/o/jest-model.txt 2>&1
  echo "jest model rc $?"; grep -E "^(PASS|FAIL)|^Tests:|✕" /tmp/o/jest-model.txt | head
  cp /tmp/o/jest-model.txt "$OUT/"
fi
t "done"
