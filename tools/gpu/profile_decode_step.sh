#!/usr/bin/env bash
# On a GPU machine: Nsight Compute's breakdown of one batch-1 greedy decode step of the 8B shape
# at a 4K context, or CONTEXT tokens (bench/README.md, "Model decode"): each kernel of the graph timed alone, with
# the DRAM bytes it reads, grouped by kernel; once per GEMM choice (GEMMS, default "auto gemv
# cublasLt": the default, every product of 1-4 rows on the small-batch GEMV, every product on
# cuBLASLt), so the tables compare within one job.
#   [GEMMS="auto cublasLt"] [CONTEXT=16384] tools/gpu/profile_decode_step.sh MODEL_DIR [OUT_DIR]
# Expects node and ncu on PATH, node_modules unpacked, dist/ and the CUDA addon built.
set -euo pipefail
model=$1
out=${2:-${OUT:-/tmp/profile-decode-out}}
mkdir -p "$out"
for gemm in ${GEMMS:-auto gemv cublasLt}; do
  LIGHTTRANSFER_GEMM=$gemm ncu --graph-profiling node --csv --page raw \
    --metrics gpu__time_duration.sum,dram__bytes_read.sum \
    node tools/gpu/decode_steps.js "$model" "${CONTEXT:-4096}" 2 > "$out/ncu-$gemm.csv" 2> "$out/ncu-$gemm.log" || {
    tail -20 "$out/ncu-$gemm.log"
    exit 1
  }
  echo "== LIGHTTRANSFER_GEMM=$gemm"
  python3 tools/gpu/summarize_ncu_step.py "$out/ncu-$gemm.csv" | tee "$out/step-$gemm.txt"
done
