#!/usr/bin/env bash
# (#13) Branch qkv-rope (= gateup-swiglu + RoPE/append in the q|k|v GEMV's epilogue; never run on a GPU) against main
# (ed79387's native code with main's dist, in addons/). Check out qkv-rope before the call: the tests and dist/
# are the branch's. 1) GPU suite on rope, memcheck over the new linear cases and the decode-graph tests; 2) batch-1
# ABBA x2 main vs rope (each with its own dist); 3) Nsight of a decode step on both.
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
t0=$(date +%s)
for v in main rope; do xz -dc addons/$v.node.xz > /tmp/addon-$v.node; done
tar -xJf addons/dist-main.tar.xz && tar -xJf addons/dist-rope.tar.xz
mkdir -p build/Release && cp /tmp/addon-rope.node build/Release/lighttransfer.node
timeout 230 node node_modules/jest/bin/jest.js --selectProjects gpu --ci > $OUT/gpu-suite-rope.txt 2>&1
echo "gpu suite (rope) exit $? at $(( $(date +%s) - t0 )) s"; grep -E "^Tests:|^Test Suites:|^FAIL" $OUT/gpu-suite-rope.txt; grep -E "✕" $OUT/gpu-suite-rope.txt | head -12
timeout 80 compute-sanitizer --tool memcheck --error-exitcode 9 --target-processes all node node_modules/jest/bin/jest.js --selectProjects gpu --ci -i test/gpu/decode-graph.test.ts test/gpu/model.test.ts -t "ropeAppendKv|SwiGLU output|chain of fused|graph" > $OUT/memcheck-rope.txt 2>&1
echo "memcheck exit $? at $(( $(date +%s) - t0 )) s"; grep -E "ERROR SUMMARY|^Tests:" $OUT/memcheck-rope.txt | head -3
PYTHONUNBUFFERED=1 timeout 90 python3 tools/make_llama8b.py /tmp/llama8b > /tmp/make.log 2>&1; echo "make exit $? at $(( $(date +%s) - t0 )) s"
timeout 170 bash tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/ab main=/tmp/addon-main.node,dist-main rope=/tmp/addon-rope.node > $OUT/ab.txt 2>&1
echo "== ab exit $? at $(( $(date +%s) - t0 )) s"; sed -n '/^build/,$p' $OUT/ab.txt; tar -czf $OUT/ab.tgz -C /tmp ab
LIGHTTRANSFER_ADDON=/tmp/addon-rope.node GEMMS=auto timeout 50 bash tools/gpu/profile_decode_step.sh /tmp/llama8b /tmp/ncu-rope > $OUT/ncu-rope.txt 2>&1
echo "== ncu rope exit $? at $(( $(date +%s) - t0 )) s"; grep -E "Kernel|kernels," $OUT/ncu-rope.txt | head -12
mv dist dist-rope && mv dist-main dist
LIGHTTRANSFER_ADDON=/tmp/addon-main.node GEMMS=auto timeout 50 bash tools/gpu/profile_decode_step.sh /tmp/llama8b /tmp/ncu-main > $OUT/ncu-main.txt 2>&1
echo "== ncu main exit $? at $(( $(date +%s) - t0 )) s"; grep -E "Kernel|kernels," $OUT/ncu-main.txt | head -12
mv dist dist-main && mv dist-rope dist
