#!/usr/bin/env bash
# (#13 / loading) Branch fast-load (weights read from the file straight into device memory through two pinned halves;
# never run on a GPU) against main (80deccf's native code with its dist). Check out fast-load before the call: the tests
# are the branch's. 1) GPU suite on fastload; 2) batch-1 decode at 4K, main vs fastload, ABBA once: each run's "loaded
# in" line is the load time of the 16 GB checkpoint, and its model check passes only with the same weights.
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
t0=$(date +%s)
for v in main fastload; do xz -dc addons/$v.node.xz > /tmp/addon-$v.node; done
tar -xJf addons/dist-main.tar.xz --transform 's/^dist/dist-main/' && tar -xJf addons/dist-fastload.tar.xz
rm -rf dist && cp -r dist-fastload dist
mkdir -p build/Release && cp /tmp/addon-fastload.node build/Release/lighttransfer.node
timeout 200 node node_modules/jest/bin/jest.js --selectProjects gpu --ci > $OUT/gpu-suite-fastload.txt 2>&1
echo "gpu suite (fastload) exit $? at $(( $(date +%s) - t0 )) s"; grep -E "^Tests:|^Test Suites:|^FAIL" $OUT/gpu-suite-fastload.txt; grep -E "✕" $OUT/gpu-suite-fastload.txt | head -12
timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 --target-processes all node node_modules/jest/bin/jest.js --selectProjects gpu --ci -i test/gpu/read-file.test.ts > $OUT/memcheck-fastload.txt 2>&1
echo "memcheck exit $? at $(( $(date +%s) - t0 )) s"; grep -E "ERROR SUMMARY|^Tests:" $OUT/memcheck-fastload.txt | head -3
PYTHONUNBUFFERED=1 timeout 90 python3 tools/make_llama8b.py /tmp/llama8b > /tmp/make.log 2>&1; echo "make exit $? at $(( $(date +%s) - t0 )) s"
ROUNDS=1 CONTEXTS=4096 timeout 150 bash tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/ab main=/tmp/addon-main.node,dist-main fastload=/tmp/addon-fastload.node > $OUT/ab.txt 2>&1
echo "== ab exit $? at $(( $(date +%s) - t0 )) s"; sed -n '/^build/,$p' $OUT/ab.txt; grep -h "loaded in" /tmp/ab/*.txt; tar -czf $OUT/ab.tgz -C /tmp ab
