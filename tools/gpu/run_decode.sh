#!/usr/bin/env bash
# Builds the decode/cache kernels into a ctypes shim and runs tools/gpu/decode_check.py on a
# CUDA machine: checks, then the benchmark. Results (decode.json, decode.md, logs) go to $OUT.
#   OUT=/tmp/out tools/gpu/run_decode.sh [decode_check.py args]
#   SANITIZE=1 also runs a few small checks under compute-sanitizer memcheck first.
#   ARCH=sm_90 (default) picks the target.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/lt-decode}
ARCH=${ARCH:-sm_90}
mkdir -p "$OUT" build
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,clocks.mem --format=csv 2>&1 | tee "$OUT/gpu.txt"

t0=$(date +%s)
nvcc -std=c++17 -O3 --use_fast_math -lineinfo --expt-relaxed-constexpr -I native -arch="$ARCH" -Xptxas -v \
  -shared -Xcompiler -fPIC tools/gpu/decode_capi.cu native/cuda/decode_attention.cu native/cuda/kv_cache.cu \
  -o build/libltdecode.so 2> "$OUT/ptxas.txt" || { cat "$OUT/ptxas.txt"; exit 2; }
echo "build: $(( $(date +%s) - t0 )) s"
grep -A2 "decodeKernel" "$OUT/ptxas.txt" | grep -E "Used|spill" | sort | uniq -c

# What the compiler made of the hot kernel: tensor-core, async-copy, ldmatrix, local-memory counts.
if command -v cuobjdump > /dev/null; then
  cuobjdump -sass build/libltdecode.so > /tmp/lt-decode.sass 2>/dev/null
  awk '/Function :/ {name = $3}
       name ~ /decodeKernel/ { if ($0 ~ /HMMA/) h[name]++; if ($0 ~ /LDGSTS/) g[name]++;
                               if ($0 ~ /LDSM/) l[name]++; if ($0 ~ /LDL|STL/) loc[name]++ }
       END {for (n in h) printf "%s HMMA %d LDGSTS %d LDSM %d LDL/STL %d\n", substr(n, length(n) - 50), h[n], g[n], l[n], loc[n]}' \
    /tmp/lt-decode.sass | tee "$OUT/sass_summary.txt"
fi

if [ "${SANITIZE:-0}" = 1 ]; then
  timeout 100 compute-sanitizer --tool memcheck --print-limit 20 \
    python3 tools/gpu/decode_check.py --quick --out "$OUT" 2>&1 | tail -40 | tee "$OUT/memcheck.txt"
fi

PYTHONUNBUFFERED=1 python3 tools/gpu/decode_check.py --out "$OUT" "$@" 2>&1 | tee "$OUT/log.txt"
exit "${PIPESTATUS[0]}"
