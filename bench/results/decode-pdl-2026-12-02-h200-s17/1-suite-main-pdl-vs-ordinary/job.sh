#!/usr/bin/env bash
# For the next GPU session (#13). main at 27f63f9 (addon-main2: SwiGLU/RoPE+append inputs read past L1, never run on a GPU) and
# branch decode-attn-nopdl (addon-nopdl: decode attention launched the ordinary way, no L2 prefetch of its first tiles).
# 1) the whole GPU suite on main2; 2) batch-1 step, main2 vs nopdl under auto, two rounds in turns; 3) Nsight breakdown of both.
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
t0=$(date +%s)
for v in main2 nopdl; do xz -dc addons/addon-$v.node.xz > /tmp/addon-$v.node; done
mkdir -p build/Release && cp /tmp/addon-main2.node build/Release/lighttransfer.node
timeout 130 node node_modules/jest/bin/jest.js --selectProjects gpu --ci > $OUT/gpu-suite.txt 2>&1
echo "gpu suite exit $? at $(( $(date +%s) - t0 )) s"; grep -E "^Tests:|^Test Suites:" $OUT/gpu-suite.txt; grep -E "✕" $OUT/gpu-suite.txt | head -8
PYTHONUNBUFFERED=1 timeout 90 python3 tools/make_llama8b.py /tmp/llama8b > /tmp/make.log 2>&1; echo "make exit $? at $(( $(date +%s) - t0 )) s"
for r in 1 2; do for v in main2 nopdl; do
  LIGHTTRANSFER_ADDON=/tmp/addon-$v.node timeout 40 node dist/bench/model-decode.js /tmp/llama8b --batches 1 --contexts 4096,16384 \
    --out $OUT/md-$r-$v.json > $OUT/md-$r-$v.txt 2>&1
  echo "== round $r $v exit $? at $(( $(date +%s) - t0 )) s"; grep -E "^ +1 +(4096|16384) " $OUT/md-$r-$v.txt | cut -c1-100; grep -c "pass': true" $OUT/md-$r-$v.txt
done; done
for v in main2 nopdl; do
  LIGHTTRANSFER_ADDON=/tmp/addon-$v.node GEMMS=auto timeout 80 bash tools/gpu/profile_decode_step.sh /tmp/llama8b /tmp/ncu-$v > $OUT/ncu-$v.txt 2>&1
  echo "== ncu $v exit $? at $(( $(date +%s) - t0 )) s"; grep -E "decodeKernel|combineKernel|gemvKernel|kernels," $OUT/ncu-$v.txt
done
# 4) batches 2 and 4 at 4K: auto (1-2 rows on the GEMV, 3-4 on cuBLASLt) against gemv (1-4 rows on the GEMV) and cublasLt, to settle the 3-4 row rule.
for g in auto gemv cublasLt; do
  LIGHTTRANSFER_ADDON=/tmp/addon-main2.node LIGHTTRANSFER_GEMM=$g timeout 40 node dist/bench/model-decode.js /tmp/llama8b --batches 2,4 --contexts 4096 \
    --out $OUT/mdb-$g.json > $OUT/mdb-$g.txt 2>&1
  echo "== batches 2,4 $g exit $? at $(( $(date +%s) - t0 )) s"; grep -E "^ +[24] +4096 " $OUT/mdb-$g.txt | cut -c1-100
done
