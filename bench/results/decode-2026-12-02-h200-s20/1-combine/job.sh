#!/usr/bin/env bash
# (#13) Branch decode-combine (decode attention: a sequence's tiles dealt evenly over its splits, the plan filling the
# waves it takes, and the last split to finish merging the partials instead of a combine kernel; never run on a GPU)
# against main (80deccf's native code = addon-main, with main's dist). Check out decode-combine before the call: the
# tests are the branch's. 1) GPU suite on combine; memcheck over the decode tests; 2) batch-1 ABBA x2 main vs combine;
# 3) Nsight of a decode step on combine; 4) batch 8 at 4K and 16K, main vs combine, once each way.
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
t0=$(date +%s)
for v in main combine; do xz -dc addons/$v.node.xz > /tmp/addon-$v.node; done
tar -xJf addons/dist-main.tar.xz
mkdir -p build/Release && cp /tmp/addon-combine.node build/Release/lighttransfer.node
timeout 175 node node_modules/jest/bin/jest.js --selectProjects gpu --ci > $OUT/gpu-suite-combine.txt 2>&1
echo "gpu suite (combine) exit $? at $(( $(date +%s) - t0 )) s"; grep -E "^Tests:|^Test Suites:|^FAIL" $OUT/gpu-suite-combine.txt; grep -E "✕" $OUT/gpu-suite-combine.txt | head -12
timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 --target-processes all node node_modules/jest/bin/jest.js --selectProjects gpu --ci -i test/gpu/kernels-decode.test.ts test/gpu/decode-graph.test.ts -t "decode attention|graph" > $OUT/memcheck-combine.txt 2>&1
echo "memcheck exit $? at $(( $(date +%s) - t0 )) s"; grep -E "ERROR SUMMARY|^Tests:" $OUT/memcheck-combine.txt | head -3
PYTHONUNBUFFERED=1 timeout 90 python3 tools/make_llama8b.py /tmp/llama8b > /tmp/make.log 2>&1; echo "make exit $? at $(( $(date +%s) - t0 )) s"
timeout 150 bash tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/ab main=/tmp/addon-main.node combine=/tmp/addon-combine.node > $OUT/ab.txt 2>&1
echo "== ab exit $? at $(( $(date +%s) - t0 )) s"; sed -n '/^build/,$p' $OUT/ab.txt
LIGHTTRANSFER_ADDON=/tmp/addon-combine.node GEMMS=auto timeout 45 bash tools/gpu/profile_decode_step.sh /tmp/llama8b /tmp/ncu-combine > $OUT/ncu-combine.txt 2>&1
echo "== ncu combine exit $? at $(( $(date +%s) - t0 )) s"; grep -E "Kernel|kernels," -A9 $OUT/ncu-combine.txt | head -11
ROUNDS=1 BATCHES=8 timeout 95 bash tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/ab8 main=/tmp/addon-main.node combine=/tmp/addon-combine.node > $OUT/ab8.txt 2>&1
echo "== ab8 exit $? at $(( $(date +%s) - t0 )) s"; sed -n '/^build/,$p' $OUT/ab8.txt; tar -czf $OUT/ab.tgz -C /tmp ab ab8
