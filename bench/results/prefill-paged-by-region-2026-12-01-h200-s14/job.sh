#!/usr/bin/env bash
# #13: the wgmma producer copies a later chunk's tiles by region (k/v tiles as the contiguous kernel, cached tiles without per-row checks): tests, kernel rows before/after, end to end, sanitizers.
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/card.txt
t0=$(date +%s)
jest="node node_modules/jest/bin/jest.js"
addon=build/Release/lighttransfer.node
xz -dc .device/addon-before.node.xz > /tmp/before.node; cp $addon /tmp/after.node
timeout 100 $jest --selectProjects gpu --ci test/gpu/kernels-prefill.test.ts > $OUT/kernels-prefill-tests.txt 2>&1; echo "prefill tests exit $?"; grep -E "^Tests:|✕" $OUT/kernels-prefill-tests.txt | head
for v in after before after; do
  cp /tmp/$v.node $addon
  timeout 80 node dist/bench/kernels.js --device cuda:0 --only prefill > $OUT/kernels-prefill-$v.txt 2>&1; echo "kernels $v exit $?"; grep -E "2nd half" $OUT/kernels-prefill-$v.txt
done
echo "at $(( $(date +%s) - t0 )) s"
python3 tools/make_llama8b.py /tmp/llama8b > $OUT/make8b.txt 2>&1 || tail -3 $OUT/make8b.txt
timeout 100 node dist/bench/prefill.js /tmp/llama8b --contexts 65536 --chunks 16384,32768,65536 --prompts 3 --out $OUT/prefill-after.json 2>&1 | tee $OUT/prefill-after.txt | grep -v "^\s*$" | tail -6
cp /tmp/before.node $addon
timeout 80 node dist/bench/prefill.js /tmp/llama8b --contexts 65536 --chunks 16384,32768 --prompts 3 --out $OUT/prefill-before.json 2>&1 | tee $OUT/prefill-before.txt | grep -v "^\s*$" | tail -5
cp /tmp/after.node $addon
echo "at $(( $(date +%s) - t0 )) s"
timeout 100 compute-sanitizer --tool racecheck --error-exitcode 9 --target-processes all $jest --selectProjects gpu --ci -i test/gpu/kernels-prefill.test.ts -t "paged prefix" > $OUT/racecheck.txt 2>&1
echo "racecheck exit $?"; grep -E "RACECHECK SUMMARY|ERROR SUMMARY|^Tests:" $OUT/racecheck.txt | tail -3
echo "at $(( $(date +%s) - t0 )) s"
timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 --target-processes all $jest --selectProjects gpu --ci -i test/gpu/kernels-prefill.test.ts -t "paged prefix" > $OUT/memcheck.txt 2>&1
echo "memcheck exit $?"; grep -E "ERROR SUMMARY|^Tests:" $OUT/memcheck.txt | tail -3
echo "total $(( $(date +%s) - t0 )) s"
