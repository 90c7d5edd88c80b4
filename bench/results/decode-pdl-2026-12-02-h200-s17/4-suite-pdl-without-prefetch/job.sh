#!/usr/bin/env bash
# Session 17, call 4. pdl2 = decode attention a programmatic dependent again, without the L2 prefetch (the clean form of pdlnp);
# final = f7093e3 (decode attention launched the ordinary way).
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
t0=$(date +%s)
for v in pdl2 final; do xz -dc addons/addon-$v.node.xz > /tmp/addon-$v.node; done
mkdir -p build/Release && cp /tmp/addon-pdl2.node build/Release/lighttransfer.node
timeout 200 node node_modules/jest/bin/jest.js --selectProjects gpu --ci > $OUT/gpu-suite-pdl2.txt 2>&1
echo "gpu suite (pdl2) exit $? at $(( $(date +%s) - t0 )) s"; grep -E "^Tests:|^Test Suites:|^PASS|^FAIL" $OUT/gpu-suite-pdl2.txt; grep -E "✕" $OUT/gpu-suite-pdl2.txt | head -8
timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 --target-processes all node node_modules/jest/bin/jest.js --selectProjects gpu --ci -i test/gpu/kernels-decode.test.ts > $OUT/memcheck-decode-pdl2.txt 2>&1
echo "memcheck decode exit $? at $(( $(date +%s) - t0 )) s"; grep -E "ERROR SUMMARY|^Tests:" $OUT/memcheck-decode-pdl2.txt | head -3
PYTHONUNBUFFERED=1 timeout 90 python3 tools/make_llama8b.py /tmp/llama8b > /tmp/make.log 2>&1; echo "make exit $? at $(( $(date +%s) - t0 )) s"
i=0; for v in pdl2 final final pdl2; do i=$((i+1))
  LIGHTTRANSFER_ADDON=/tmp/addon-$v.node timeout 40 node dist/bench/model-decode.js /tmp/llama8b --batches 1 --contexts 4096,16384 \
    --out $OUT/md-$i-$v.json > $OUT/md-$i-$v.txt 2>&1
  echo "== run $i $v exit $? at $(( $(date +%s) - t0 )) s"; grep -E "^ +1 +(4096|16384) " $OUT/md-$i-$v.txt | cut -c1-70; grep -c "pass': true" $OUT/md-$i-$v.txt
done
