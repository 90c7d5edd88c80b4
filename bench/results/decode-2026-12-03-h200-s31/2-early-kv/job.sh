#!/usr/bin/env bash
# Branch decode-early-kv (experiment builds, macros set in the source at build time):
#   early      = LT_EXP_EARLY_KV 1: q|k|v + RoPE + append lets attention launch right after its wait;
#                attention reads the length and page ids and issues its first two tiles' K/V
#                (all rows but the one the append writes) before its wait.
#   earlycarve = early + every GEMV kernel prefers the largest shared-memory carveout.
#   carve      = the carveout alone.
# Run from the repository root of branch decode-early-kv with this file copied there; carry
# .device/node.xz, .device/nm-tests.tar.xz, .device/env.sh, .device/addon-main-s28.xz,
# .device/addon-s31-{early,earlycarve,carve}.xz, dist (main's).
set -u
start=$(date +%s)
t() { echo "[$(( $(date +%s) - start )) s] $*"; }
source .device/env.sh
tar -xJf .device/nm-tests.tar.xz
mkdir -p build/Release /tmp/addons /tmp/o/tests
xz -dc .device/addon-main-s28.xz > /tmp/addons/main.node
for v in early earlycarve carve; do xz -dc .device/addon-s31-$v.xz > /tmp/addons/$v.node; done
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee /tmp/o/card.txt
(python3 tools/make_llama8b.py /tmp/llama8b > /tmp/o/make8b.txt 2>&1; echo "make8b rc $?" >> /tmp/o/make8b.txt) &
mk=$!
for v in early earlycarve; do
  t "decode tests on $v"
  LIGHTTRANSFER_ADDON=/tmp/addons/$v.node timeout 100 node node_modules/jest/bin/jest.js \
    --selectProjects gpu --ci test/gpu/kernels-decode.test.ts test/gpu/decode-graph.test.ts > /tmp/o/tests/jest-decode-$v.txt 2>&1
  echo "decode tests ($v) rc $?"; grep -E "^(PASS|FAIL)|^Tests:|✕" /tmp/o/tests/jest-decode-$v.txt | head
done
t "memcheck early"
LIGHTTRANSFER_ADDON=/tmp/addons/early.node timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 \
  --target-processes all node node_modules/jest/bin/jest.js --selectProjects gpu --ci test/gpu/kernels-decode.test.ts \
  > /tmp/o/tests/memcheck-early.txt 2>&1
echo "memcheck rc $?"; tail -2 /tmp/o/tests/memcheck-early.txt
wait $mk; tail -1 /tmp/o/make8b.txt
t "ab"
ROUNDS=2 CONTEXTS=4096,16384 timeout 300 tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/o/ab \
  main=/tmp/addons/main.node early=/tmp/addons/early.node earlycarve=/tmp/addons/earlycarve.node carve=/tmp/addons/carve.node
echo "ab rc $?"
(cd /tmp/o && tar -cJf "$OUT/ab.tar.xz" ab tests card.txt make8b.txt)
t "done"
