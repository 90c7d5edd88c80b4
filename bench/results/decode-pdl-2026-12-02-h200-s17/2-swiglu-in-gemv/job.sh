#!/usr/bin/env bash
# Session 17, call 2. comb = branch combined (decode attention launched the ordinary way + SwiGLU inside the 1-row down GEMV);
# main2 = main 27f63f9; pdlnp = main without the decode L2 prefetch (PDL kept); swiglu = main + SwiGLU in the GEMV.
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
t0=$(date +%s)
for v in main2 comb; do xz -dc addons/addon-$v.node.xz > /tmp/addon-$v.node; done
mkdir -p build/Release && cp /tmp/addon-comb.node build/Release/lighttransfer.node
timeout 140 node node_modules/jest/bin/jest.js --selectProjects gpu --ci > $OUT/gpu-suite-comb.txt 2>&1
echo "gpu suite (comb) exit $? at $(( $(date +%s) - t0 )) s"; grep -E "^Tests:|^Test Suites:" $OUT/gpu-suite-comb.txt; grep -E "✕" $OUT/gpu-suite-comb.txt | head -8
PYTHONUNBUFFERED=1 timeout 90 python3 tools/make_llama8b.py /tmp/llama8b > /tmp/make.log 2>&1; echo "make exit $? at $(( $(date +%s) - t0 )) s"
for r in 1 2; do i=0; for v in main2 comb comb main2; do i=$((i+1))
  LIGHTTRANSFER_ADDON=/tmp/addon-$v.node timeout 40 node dist/bench/model-decode.js /tmp/llama8b --batches 1 --contexts 4096,16384 \
    --out $OUT/md-$r-$i-$v.json > $OUT/md-$r-$i-$v.txt 2>&1
  echo "== round $r.$i $v exit $? at $(( $(date +%s) - t0 )) s"; grep -E "^ +1 +(4096|16384) " $OUT/md-$r-$i-$v.txt | cut -c1-70; grep -c "pass': true" $OUT/md-$r-$i-$v.txt
done; done
for r in 1 2; do for g in auto cublasLt; do
  LIGHTTRANSFER_ADDON=/tmp/addon-comb.node LIGHTTRANSFER_GEMM=$g timeout 40 node dist/bench/model-decode.js /tmp/llama8b --batches 2 --contexts 4096,16384 \
    --out $OUT/mdb-$r-$g.json > $OUT/mdb-$r-$g.txt 2>&1
  echo "== batch 2 round $r $g exit $? at $(( $(date +%s) - t0 )) s"; grep -E "^ +2 +(4096|16384) " $OUT/mdb-$r-$g.txt | cut -c1-70
done; done
LIGHTTRANSFER_ADDON=/tmp/addon-comb.node GEMMS=auto timeout 80 bash tools/gpu/profile_decode_step.sh /tmp/llama8b /tmp/ncu-comb > $OUT/ncu-comb.txt 2>&1
echo "== ncu comb exit $? at $(( $(date +%s) - t0 )) s"; grep -E "decodeKernel|combineKernel|gemvKernel|swiGlu|kernels," $OUT/ncu-comb.txt
