#!/usr/bin/env bash
# Next session: branch decode-cluster-merge (its last commit) on the card, against main's native code.
# Check out the branch (its test/ runs in jest; its TypeScript is main's, so dist/ is main's
# build). Copy this file into the repository root (untracked files travel; carry takes 8 paths).
# Delete models/demo/model.safetensors and bench/results from the working tree for the call (git
# checkout both after). Carry .device/node.xz, .device/nm-tests.tar.xz, .device/env.sh,
# .device/addon-main-s28.xz, .device/addon-cluster.xz, dist.
# The branch uses clusters where 16 splits leave at most 6 tiles each (the 4K point here, not 8K or
# 16K); the second A/B exports LT_DECODE_CLUSTER_TILES=32 (main's addon ignores it) so that 8K
# and 16K use clusters too. The decode tests run three times: default, with clusters wherever
# they fit (LT_DECODE_CLUSTER_TILES=64) and never (0).
set -u
start=$(date +%s)
t() { echo "[$(( $(date +%s) - start )) s] $*"; }
source .device/env.sh
tar -xJf .device/nm-tests.tar.xz
mkdir -p build/Release /tmp/addons /tmp/o/tests
xz -dc .device/addon-main-s28.xz > /tmp/addons/main.node
xz -dc .device/addon-cluster.xz > /tmp/addons/cluster.node
cp /tmp/addons/cluster.node build/Release/lighttransfer.node
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee /tmp/o/card.txt
(python3 tools/make_llama8b.py /tmp/llama8b > /tmp/o/make8b.txt 2>&1; echo "make8b rc $?" >> /tmp/o/make8b.txt) &
mk=$!
t "decode tests on cluster"
for tiles in 6 64 0; do
  LT_DECODE_CLUSTER_TILES=$tiles LIGHTTRANSFER_ADDON=/tmp/addons/cluster.node timeout 100 node node_modules/jest/bin/jest.js \
    --selectProjects gpu --ci test/gpu/kernels-decode.test.ts test/gpu/decode-graph.test.ts > /tmp/o/tests/jest-decode-$tiles.txt 2>&1
  echo "decode tests (cluster tiles $tiles) rc $?"; grep -E "^(PASS|FAIL)|^Tests:|✕" /tmp/o/tests/jest-decode-$tiles.txt | head
done
t "memcheck"
LT_DECODE_CLUSTER_TILES=64 LIGHTTRANSFER_ADDON=/tmp/addons/cluster.node timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 \
  --target-processes all node node_modules/jest/bin/jest.js --selectProjects gpu --ci test/gpu/kernels-decode.test.ts \
  > /tmp/o/tests/memcheck.txt 2>&1
echo "memcheck rc $?"; tail -4 /tmp/o/tests/memcheck.txt
wait $mk; tail -1 /tmp/o/make8b.txt
t "ab"
ROUNDS=2 CONTEXTS=4096,8192,16384 timeout 260 tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/o/ab \
  main=/tmp/addons/main.node cluster=/tmp/addons/cluster.node
echo "ab rc $?"
t "ab 8K and 16K with clusters"
LT_DECODE_CLUSTER_TILES=32 ROUNDS=1 CONTEXTS=8192,16384 timeout 100 tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/o/ab16 \
  main=/tmp/addons/main.node cluster32=/tmp/addons/cluster.node
echo "ab16 rc $?"
(cd /tmp/o && tar -cJf "$OUT/ab.tar.xz" ab ab16 tests card.txt make8b.txt)
t "model tests"
LIGHTTRANSFER_ADDON=/tmp/addons/cluster.node timeout 200 node node_modules/jest/bin/jest.js --selectProjects gpu --ci \
  test/gpu/model.test.ts > /tmp/o/jest-model.txt 2>&1
echo "model tests rc $?"; grep -E "^(PASS|FAIL)|^Tests:|✕" /tmp/o/jest-model.txt | head
cp /tmp/o/jest-model.txt "$OUT/"
t "done"
