#!/usr/bin/env bash
# (#13) Branch qkv-rope at bca4dba+ (the GEMV's RoPE epilogue takes its cos/sin and slots before the first sums;
# the linear tests' bound allows f16 underflow) against main (ed79387's native code with main's dist). Check out
# qkv-rope before the call. 1) GPU suite on rope2; 2) batch-1 ABBA x2 main vs rope2; 3) Nsight of a decode step on rope2.
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
t0=$(date +%s)
for v in main rope2; do xz -dc addons/$v.node.xz > /tmp/addon-$v.node; done
tar -xJf addons/dist-main.tar.xz && tar -xJf addons/dist-rope.tar.xz
mkdir -p build/Release && cp /tmp/addon-rope2.node build/Release/lighttransfer.node
timeout 230 node node_modules/jest/bin/jest.js --selectProjects gpu --ci > $OUT/gpu-suite-rope2.txt 2>&1
echo "gpu suite (rope2) exit $? at $(( $(date +%s) - t0 )) s"; grep -E "^Tests:|^Test Suites:|^FAIL" $OUT/gpu-suite-rope2.txt; grep -E "✕" $OUT/gpu-suite-rope2.txt | head -12
PYTHONUNBUFFERED=1 timeout 90 python3 tools/make_llama8b.py /tmp/llama8b > /tmp/make.log 2>&1; echo "make exit $? at $(( $(date +%s) - t0 )) s"
timeout 170 bash tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/ab main=/tmp/addon-main.node,dist-main rope2=/tmp/addon-rope2.node > $OUT/ab.txt 2>&1
echo "== ab exit $? at $(( $(date +%s) - t0 )) s"; sed -n '/^build/,$p' $OUT/ab.txt; tar -czf $OUT/ab.tgz -C /tmp ab
LIGHTTRANSFER_ADDON=/tmp/addon-rope2.node GEMMS=auto timeout 50 bash tools/gpu/profile_decode_step.sh /tmp/llama8b /tmp/ncu-rope2 > $OUT/ncu-rope2.txt 2>&1
echo "== ncu rope2 exit $? at $(( $(date +%s) - t0 )) s"; grep -E "Kernel|kernels," -A9 $OUT/ncu-rope2.txt | head -12
