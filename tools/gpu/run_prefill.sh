#!/usr/bin/env bash
# Builds the prefill/lazy-ratio kernels with the C shim for sm_90 and runs the correctness
# check and the benchmark against PyTorch SDPA (tools/gpu/prefill_check.py).
#   tools/gpu/run_prefill.sh [prefill_check.py args...]      (results go to $OUT or /tmp/prefill_out)
# Env: ARCH (default sm_90), NVCC_EXTRA (extra nvcc flags).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT_DIR=${OUT:-/tmp/prefill_out}
BUILD=${BUILD:-/tmp/lt_prefill_build}
ARCH=${ARCH:-sm_90}
mkdir -p "$OUT_DIR" "$BUILD"

nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader | tee "$OUT_DIR/gpu.txt" || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT_DIR/gpu.txt"

echo "building libltprefill.so for $ARCH (and the wgmma kernel for sm_90a)"
t0=$(date +%s)
NVCC_FLAGS=(-std=c++17 -O3 --use_fast_math -lineinfo --expt-relaxed-constexpr -I native -Xcompiler -fPIC)
# build_lib SUFFIX FLAGS...: the wgmma kernel for sm_90a, then the library for $ARCH around it,
# as $BUILD/libltprefill$SUFFIX.so; the compilers' messages go to stderr.
build_lib() {
  local suffix=$1; shift
  nvcc "${NVCC_FLAGS[@]}" -gencode arch=compute_90a,code=sm_90a "$@" \
    -c native/cuda/prefill_attention_sm90.cu -o "$BUILD/prefill_sm90$suffix.o" &&
    nvcc "${NVCC_FLAGS[@]}" -gencode arch=compute_${ARCH#sm_},code=$ARCH "$@" -shared \
      native/cuda/prefill_attention.cu native/cuda/lazy_ratio.cu tools/gpu/prefill_capi.cu \
      "$BUILD/prefill_sm90$suffix.o" -o "$BUILD/libltprefill$suffix.so"
}
# shellcheck disable=SC2086  # NVCC_EXTRA and the variants' flags are word lists
build_lib "" -Xptxas -v ${NVCC_EXTRA:-} 2> "$OUT_DIR/build.log" || { cat "$OUT_DIR/build.log"; exit 1; }
echo "built in $(( $(date +%s) - t0 )) s"
# ALT_NVCC: "name:flags;name:flags" variant builds, timed beside the main one (--alt-lib).
ALT_ARGS=()
if [ -n "${ALT_NVCC:-}" ]; then
  IFS=';' read -ra VARIANTS <<< "$ALT_NVCC"
  for v in "${VARIANTS[@]}"; do
    name=${v%%:*}; flags=${v#*:}
    # shellcheck disable=SC2086
    build_lib "_$name" $flags 2> "$BUILD/build_$name.log" &
    ALT_ARGS+=(--alt-lib "$name=$BUILD/libltprefill_$name.so")
  done
  wait
  echo "alt builds: $ALT_NVCC"
fi
grep -E "registers|spill" "$OUT_DIR/build.log" | sort | uniq -c | head -20
# ptxas says when it serializes wgmma or waits on its own (the overlap is then lost silently).
grep -E "C75(10|15|17)" "$OUT_DIR/build.log" | head -5 || true

# What the compiler emitted: tensor-core ops, local-memory traffic per kernel.
if command -v cuobjdump > /dev/null; then
  cuobjdump --dump-sass "$BUILD/libltprefill.so" > "$BUILD/sass.txt" 2>/dev/null || true
  awk '/Function :/{f=$3} /HMMA/{h[f]++} /HGMMA/{w[f]++} /LDL|STL/{l[f]++} /LDSM/{s[f]++} /MUFU.EX2/{x[f]++}
       END{for (k in x) printf "%-90s HMMA %5d HGMMA %4d LDSM %4d EX2 %4d LDL/STL %d\n", k, h[k], w[k], s[k], x[k], l[k]}' \
       "$BUILD/sass.txt" | tee "$OUT_DIR/sass_summary.txt"
fi

PYTHONUNBUFFERED=1 python3 tools/gpu/prefill_check.py --lib "$BUILD/libltprefill.so" --out "$OUT_DIR" ${ALT_ARGS[@]+"${ALT_ARGS[@]}"} "$@"
