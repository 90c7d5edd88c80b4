#!/usr/bin/env bash
# Branch decode-early-kv at its experiment commit with LT_EXP_CARVEOUT 1 and
# LT_EXP_CARVEOUT_VALUE cudaSharedmemCarveoutMaxL1 (carvemin: every GEMV kernel prefers the largest
# L1), against main's native code. Carry .device/node.xz, .device/nm-tests.tar.xz, .device/env.sh,
# .device/addon-main-s28.xz, .device/addon-s31-carvemin.xz, dist (main's).
set -u
start=$(date +%s)
t() { echo "[$(( $(date +%s) - start )) s] $*"; }
source .device/env.sh
tar -xJf .device/nm-tests.tar.xz
mkdir -p /tmp/addons /tmp/o
xz -dc .device/addon-main-s28.xz > /tmp/addons/main.node
xz -dc .device/addon-s31-carvemin.xz > /tmp/addons/carvemin.node
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee /tmp/o/card.txt
python3 tools/make_llama8b.py /tmp/llama8b > /tmp/o/make8b.txt 2>&1; echo "make8b rc $?" | tee -a /tmp/o/make8b.txt
t "ab"
ROUNDS=3 CONTEXTS=4096,16384 timeout 300 tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/o/ab \
  main=/tmp/addons/main.node carvemin=/tmp/addons/carvemin.node
echo "ab rc $?"
(cd /tmp/o && tar -cJf "$OUT/ab.tar.xz" ab card.txt make8b.txt)
t "done"
