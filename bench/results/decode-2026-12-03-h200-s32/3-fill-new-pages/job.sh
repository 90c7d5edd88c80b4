#!/usr/bin/env bash
# Branch fill-new-pages (on main 978b74a): the whole GPU suite and the exclusive one on it, then
# main's build (native and dist) against it at batch 32 and 16K, one ABBA round: a page-boundary
# step now uploads and checks only the new entries, which shows in the averaged fill and launch
# times. Carry .device (node.xz, nm-tests.tar.xz, env.sh, addon-s32-inc.xz = main's native,
# addon-s32-fill.xz), dist (the branch's) and dist-main (main's TypeScript).
set -u
start=$(date +%s)
t() { echo "[$(( $(date +%s) - start )) s] $*"; }
source .device/env.sh
tar -xJf .device/nm-tests.tar.xz
mkdir -p /tmp/addons /tmp/o/tests
xz -dc .device/addon-s32-inc.xz > /tmp/addons/main.node
xz -dc .device/addon-s32-fill.xz > /tmp/addons/fill.node
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee /tmp/o/card.txt
t "gpu suite on fill"
LIGHTTRANSFER_ADDON=/tmp/addons/fill.node timeout 240 node node_modules/jest/bin/jest.js --selectProjects gpu --ci \
  > /tmp/o/tests/jest-gpu.txt 2>&1
echo "gpu suite rc $?"; grep -E "^(PASS|FAIL)|^Tests:|✕" /tmp/o/tests/jest-gpu.txt | head -20
t "exclusive"
LIGHTTRANSFER_ADDON=/tmp/addons/fill.node timeout 120 node node_modules/jest/bin/jest.js --selectProjects gpu-exclusive --ci \
  > /tmp/o/tests/jest-exclusive.txt 2>&1
echo "exclusive rc $?"; grep -E "^(PASS|FAIL)|^Tests:|✕" /tmp/o/tests/jest-exclusive.txt | head
(cd /tmp/o && tar -cJf "$OUT/tests.tar.xz" tests card.txt)
t "make8b"
python3 tools/make_llama8b.py /tmp/llama8b > /tmp/o/make8b.txt 2>&1; echo "make8b rc $?" >> /tmp/o/make8b.txt
tail -1 /tmp/o/make8b.txt
t "ab"
ROUNDS=1 BATCHES=32 CONTEXTS=16384 timeout 240 tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/o/ab \
  main=/tmp/addons/main.node,dist-main fill=/tmp/addons/fill.node
echo "ab rc $?"
grep -h "batch 32 context" /tmp/o/ab/ab-*.txt | cut -c1-150
(cd /tmp/o && tar -cJf "$OUT/ab.tar.xz" ab make8b.txt)
t "done"
