#!/usr/bin/env bash
# Next session: branch o-prefetch (92710c7) on the card. Check out the branch first (its lib/ and
# test/ run in jest; its dist/ is .device/dist-o-prefetch.tar.xz, built from it: unpack it over
# dist/). Delete models/demo/model.safetensors and bench/results from the working tree for the call
# (git checkout both after), then carry .device (the whole folder is too big: name node.xz,
# nm-tests.tar.xz, env.sh, the four addon-*.xz below, this file) and dist. main's addon ignores the
# prefetchWeights flag the branch's dist passes, so "main" below is main's behaviour. pfn = branch
# o-prefetch-normal (no evict_last policy), pfkv = branch o-prefetch-kv-evict-first (attention's
# K/V read evict_first besides).
set -u
start=$(date +%s)
t() { echo "[$(( $(date +%s) - start )) s] $*"; }
source .device/env.sh
tar -xJf .device/nm-tests.tar.xz
mkdir -p build/Release /tmp/addons /tmp/o/tests
for v in main-s28 o-prefetch o-prefetch-normal o-prefetch-kvfirst; do xz -dc .device/addon-$v.xz > /tmp/addons/$v.node; done
cp /tmp/addons/o-prefetch.node build/Release/lighttransfer.node
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee /tmp/o/card.txt
(python3 tools/make_llama8b.py /tmp/llama8b > /tmp/o/make8b.txt 2>&1; echo "make8b rc $?" >> /tmp/o/make8b.txt) &
mk=$!
LIGHTTRANSFER_ADDON=/tmp/addons/o-prefetch.node timeout 150 node node_modules/jest/bin/jest.js --selectProjects gpu --ci \
  test/gpu/kernels-decode.test.ts test/gpu/decode-graph.test.ts > /tmp/o/tests/jest-decode.txt 2>&1
echo "decode tests rc $?"; grep -E "^(PASS|FAIL)|^Tests:|✕" /tmp/o/tests/jest-decode.txt | head
wait $mk; tail -1 /tmp/o/make8b.txt
t "ab"
ROUNDS=2 CONTEXTS=4096,16384 timeout 300 tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/o/ab main=/tmp/addons/main-s28.node \
  pf=/tmp/addons/o-prefetch.node pfn=/tmp/addons/o-prefetch-normal.node pfkv=/tmp/addons/o-prefetch-kvfirst.node
echo "ab rc $?"
(cd /tmp/o && tar -cJf "$OUT/ab.tar.xz" ab tests card.txt make8b.txt)
t "model tests"
LIGHTTRANSFER_ADDON=/tmp/addons/o-prefetch.node timeout 200 node node_modules/jest/bin/jest.js --selectProjects gpu --ci \
  test/gpu/model.test.ts > /tmp/o/jest-model.txt 2>&1
echo "model tests rc $?"; grep -E "^(PASS|FAIL)|^Tests:|✕" /tmp/o/jest-model.txt | head
cp /tmp/o/jest-model.txt "$OUT/"
t "done"
