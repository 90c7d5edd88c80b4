#!/usr/bin/env bash
# #13, branch decode-pdl: decode attention and ropeAppendKv as programmatic dependents (the attention prefetches its first K/V rows into L2 before it waits). GPU tests of the decode path on the branch's addon, then the batch-1 decode step of the random Llama-3-8B shape, main's addon and the branch's alternating (3 rounds), logits checked against transformers in each run.
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/card.txt
t0=$(date +%s)
jest="node node_modules/jest/bin/jest.js"
for v in main pdl; do xz -dc .device/pdl/addon-$v.node.xz > /tmp/addon-$v.node; done
LIGHTTRANSFER_ADDON=/tmp/addon-pdl.node timeout 150 $jest --selectProjects gpu --ci test/gpu/kernels-decode.test.ts test/gpu/decode-graph.test.ts test/gpu/hybrid.test.ts > $OUT/tests-pdl.txt 2>&1
echo "decode tests (pdl) exit $? at $(( $(date +%s) - t0 )) s"; grep -E "^Tests:|✕" $OUT/tests-pdl.txt | head -12
PYTHONUNBUFFERED=1 timeout 130 python3 tools/make_llama8b.py /tmp/llama8b > /tmp/make.log 2>&1
echo "make_llama8b exit $? at $(( $(date +%s) - t0 )) s"; tail -2 /tmp/make.log
for i in 1 2 3; do
  for v in main pdl; do
    LIGHTTRANSFER_ADDON=/tmp/addon-$v.node timeout 100 node dist/bench/model-decode.js /tmp/llama8b --batches 1 --contexts 4096,16384 \
      --out $OUT/md-$i-$v.json > /tmp/md-$i-$v.txt 2>&1
    echo "== $i $v exit $? at $(( $(date +%s) - t0 )) s"; grep -E "^ +1 +(4096|16384) " /tmp/md-$i-$v.txt; grep -iE "correctness" /tmp/md-$i-$v.txt | cut -c1-200
  done
done
echo "total $(( $(date +%s) - t0 )) s"
