#!/usr/bin/env bash
# (#13) Batch 32 at 16K, where 48f7cc4 (the GEMV epilogues) measured 1.5-2% slower than ed79387 in two short runs.
# Three builds in turns: old = ed79387's native code with its dist; mix = main's native code (80deccf) with ed79387's dist (the
# layer as before: the products into the layer's own buffers, RoPE + append and SwiGLU as separate calls); main =
# 80deccf with its dist (the products into the call's scratch). old vs mix isolates the native code, mix vs main the
# layer. Then batch 32 at 4K once.
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
t0=$(date +%s)
xz -dc addons/old.node.xz > /tmp/addon-old.node && xz -dc addons/main.node.xz > /tmp/addon-main.node
tar -xJf addons/dist-main.tar.xz && tar -xJf addons/dist-old.tar.xz
mkdir -p build/Release && cp /tmp/addon-main.node build/Release/lighttransfer.node
PYTHONUNBUFFERED=1 timeout 90 python3 tools/make_llama8b.py /tmp/llama8b > /tmp/make.log 2>&1; echo "make exit $? at $(( $(date +%s) - t0 )) s"
ROUNDS=1 BATCHES=32 CONTEXTS=16384 timeout 300 bash tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/ab old=/tmp/addon-old.node,dist-main mix=/tmp/addon-main.node,dist-main main=/tmp/addon-main.node > $OUT/ab.txt 2>&1
echo "== ab exit $? at $(( $(date +%s) - t0 )) s"; sed -n '/^build/,$p' $OUT/ab.txt
ROUNDS=1 BATCHES=32 CONTEXTS=4096 timeout 120 bash tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/ab4 old=/tmp/addon-old.node,dist-main main=/tmp/addon-main.node > $OUT/ab4.txt 2>&1
echo "== ab4 exit $? at $(( $(date +%s) - t0 )) s"; sed -n '/^build/,$p' $OUT/ab4.txt; tar -czf $OUT/ab.tgz -C /tmp ab ab4
