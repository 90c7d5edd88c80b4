#!/usr/bin/env bash
# #13, branch gemv-wide: the small-batch GEMV with 4 rows per block and k split over its 256 threads. GPU tests of linear (GEMV and library, float64 references) and the decode graph on the branch's addon; then the per-projection table (1 and 4 rows, GEMV / cuBLASLt / auto) of main's addon and the branch's, alternating, two rounds.
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/card.txt
t0=$(date +%s)
jest="node node_modules/jest/bin/jest.js"
for v in main wide; do xz -dc .device/wide/addon-$v.node.xz > /tmp/addon-$v.node; done
LIGHTTRANSFER_ADDON=/tmp/addon-wide.node timeout 200 $jest --selectProjects gpu --ci test/gpu/model.test.ts test/gpu/decode-graph.test.ts > $OUT/tests-wide.txt 2>&1
echo "tests (wide) exit $? at $(( $(date +%s) - t0 )) s"; grep -E "^Tests:|✕" $OUT/tests-wide.txt | head -12
for i in 1 2; do
  for v in main wide; do
    LIGHTTRANSFER_ADDON=/tmp/addon-$v.node timeout 110 node dist/bench/kernels.js --device cuda:0 --only linear > $OUT/linear-$i-$v.txt 2>&1
    echo "== linear $i $v exit $? at $(( $(date +%s) - t0 )) s"; grep -E "linear 1 row" $OUT/linear-$i-$v.txt | grep -E "gemv|cublasLt" | awk '{print}' | cut -c1-140
  done
done
echo "total $(( $(date +%s) - t0 )) s"
