#!/usr/bin/env bash
# For the next GPU session (#13), call 1 of 2. main = the committed native code (addon-pdl2); small = branch decode-small
# (rope-split: RoPE + append over several CTAs per decode token; + the combine kernel with 16 partials in flight per lane;
# never run on a GPU). 1) GPU suite + memcheck of the decode tests on small; 2) batch-1 ABBA x2 main vs small; 3) Nsight of both.
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
t0=$(date +%s)
for v in pdl2 small; do xz -dc addons/$v.node.xz > /tmp/addon-$v.node; done
mkdir -p build/Release && cp /tmp/addon-small.node build/Release/lighttransfer.node
timeout 220 node node_modules/jest/bin/jest.js --selectProjects gpu --ci > $OUT/gpu-suite-small.txt 2>&1
echo "gpu suite (small) exit $? at $(( $(date +%s) - t0 )) s"; grep -E "^Tests:|^Test Suites:|^FAIL" $OUT/gpu-suite-small.txt; grep -E "✕" $OUT/gpu-suite-small.txt | head -8
timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 --target-processes all node node_modules/jest/bin/jest.js --selectProjects gpu --ci -i test/gpu/kernels-decode.test.ts test/gpu/decode-graph.test.ts > $OUT/memcheck-small.txt 2>&1
echo "memcheck exit $? at $(( $(date +%s) - t0 )) s"; grep -E "ERROR SUMMARY|^Tests:" $OUT/memcheck-small.txt | head -3
PYTHONUNBUFFERED=1 timeout 90 python3 tools/make_llama8b.py /tmp/llama8b > /tmp/make.log 2>&1; echo "make exit $? at $(( $(date +%s) - t0 )) s"
timeout 200 bash tools/gpu/ab_model_decode.sh /tmp/llama8b $OUT/ab main=/tmp/addon-pdl2.node small=/tmp/addon-small.node > $OUT/ab.txt 2>&1
echo "== ab exit $? at $(( $(date +%s) - t0 )) s"; sed -n '/^build/,$p' $OUT/ab.txt
for v in pdl2 small; do
  LIGHTTRANSFER_ADDON=/tmp/addon-$v.node GEMMS=auto timeout 60 bash tools/gpu/profile_decode_step.sh /tmp/llama8b /tmp/ncu-$v > $OUT/ncu-$v.txt 2>&1
  echo "== ncu $v exit $? at $(( $(date +%s) - t0 )) s"; grep -E "decodeKernel|combineKernel|ropeAppend|kernels," $OUT/ncu-$v.txt
done
