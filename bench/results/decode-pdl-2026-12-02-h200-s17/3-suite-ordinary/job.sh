#!/usr/bin/env bash
# Session 17, call 3. final = main at f7093e3 (decode attention launched the ordinary way); pdlnp = 27f63f9 without the decode
# L2 prefetch (decode attention still a programmatic dependent of RoPE + append, which lets it launch early).
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
t0=$(date +%s)
for v in final pdlnp; do xz -dc addons/addon-$v.node.xz > /tmp/addon-$v.node; done
mkdir -p build/Release && cp /tmp/addon-final.node build/Release/lighttransfer.node
timeout 230 node node_modules/jest/bin/jest.js --selectProjects gpu --ci > $OUT/gpu-suite-final.txt 2>&1
echo "gpu suite (final) exit $? at $(( $(date +%s) - t0 )) s"; grep -E "^Tests:|^Test Suites:|^PASS|^FAIL" $OUT/gpu-suite-final.txt; grep -E "✕" $OUT/gpu-suite-final.txt | head -8
timeout 110 compute-sanitizer --tool memcheck --error-exitcode 9 --target-processes all node node_modules/jest/bin/jest.js --selectProjects gpu --ci -i test/gpu/kernels-decode.test.ts > $OUT/memcheck-decode.txt 2>&1
echo "memcheck decode exit $? at $(( $(date +%s) - t0 )) s"; grep -E "ERROR SUMMARY|^Tests:" $OUT/memcheck-decode.txt | head -3
PYTHONUNBUFFERED=1 timeout 90 python3 tools/make_llama8b.py /tmp/llama8b > /tmp/make.log 2>&1; echo "make exit $? at $(( $(date +%s) - t0 )) s"
for r in 1 2; do i=0; for v in final pdlnp pdlnp final; do i=$((i+1))
  LIGHTTRANSFER_ADDON=/tmp/addon-$v.node timeout 40 node dist/bench/model-decode.js /tmp/llama8b --batches 1 --contexts 4096,16384 \
    --out $OUT/md-$r-$i-$v.json > $OUT/md-$r-$i-$v.txt 2>&1
  echo "== round $r.$i $v exit $? at $(( $(date +%s) - t0 )) s"; grep -E "^ +1 +(4096|16384) " $OUT/md-$r-$i-$v.txt | cut -c1-70; grep -c "pass': true" $OUT/md-$r-$i-$v.txt
done; done
