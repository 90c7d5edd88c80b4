#!/usr/bin/env bash
# Builds the model operations (native/cuda/gemm.cu, layer_ops.cu, sampling.cu) with the C shim
# tools/gpu/model_ops_capi.cu into a shared library, with the addon's CUDA flags (CMakeLists.txt:
# -O3 --use_fast_math), and runs tools/gpu/model_ops_check.py: checks against PyTorch /
# transformers, then the GEMM and row-wise benchmark. Results (check.log, gemm.json, gemm.md,
# ptxas.txt, sass_summary.txt) go to $OUT.
#   OUT=/tmp/out tools/gpu/run_model_ops.sh [model_ops_check.py args...]
#   ARCH=sm_90 (default) picks the target.
#   SANITIZE=1 first runs the --quick checks under compute-sanitizer memcheck.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/lt-model-ops}
ARCH=${ARCH:-sm_90}
mkdir -p "$OUT" build
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,clocks.mem --format=csv 2>&1 | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)" 2>&1 | tee -a "$OUT/gpu.txt"

t0=$(date +%s)
nvcc -std=c++17 -O3 --use_fast_math -lineinfo --expt-relaxed-constexpr -I native \
  -gencode arch=compute_${ARCH#sm_},code=$ARCH -Xptxas -v -shared -Xcompiler -fPIC \
  tools/gpu/model_ops_capi.cu native/cuda/gemm.cu native/cuda/gemv.cu native/cuda/layer_ops.cu native/cuda/rope_append.cu \
  native/cuda/sampling.cu \
  native/cuda/runtime.cu native/core/device.cpp -ldl \
  -o build/libltmodelops.so 2> "$OUT/ptxas.txt" || { cat "$OUT/ptxas.txt"; exit 2; }
echo "build: $(( $(date +%s) - t0 )) s"
grep -E "stack frame" "$OUT/ptxas.txt" | sort | uniq -c

# What the compiler made of the fallback GEMM: tensor-core ops, shared loads, local memory.
if command -v cuobjdump > /dev/null; then
  cuobjdump -sass build/libltmodelops.so > /tmp/lt-model-ops.sass 2>/dev/null
  awk '/Function :/ {name = $3}
       { if ($0 ~ /HMMA/) h[name]++; if ($0 ~ /LDS/) s[name]++; if ($0 ~ /LDL|STL/) loc[name]++; if ($0 ~ /LDG.E.128/) g[name]++ }
       END {for (n in s) printf "%-70s HMMA %4d LDS %4d LDG.128 %3d LDL/STL %d\n", substr(n, 1, 70), h[n], s[n], g[n], loc[n]}' \
    /tmp/lt-model-ops.sass | sort | tee "$OUT/sass_summary.txt"
fi

# What a process without PyTorch (so without its copy of cuBLAS) would get, e.g. the Node addon.
python3 -c "
import ctypes
L = ctypes.CDLL('build/libltmodelops.so')
n, d, e = (ctypes.create_string_buffer(s) for s in (64, 1024, 1024))
L.lt_gemm_backend(n, 64, d, 1024, e, 1024)
print('gemmBackend() in a process without torch:', n.value.decode(), '|', d.value.decode())
" 2>&1 | tee "$OUT/backend_no_torch.txt"

if [ "${SANITIZE:-0}" = 1 ]; then
  timeout 150 compute-sanitizer --tool memcheck --print-limit 20 \
    python3 tools/gpu/model_ops_check.py --lib build/libltmodelops.so --quick --out /tmp/lt-model-ops-quick 2>&1 \
    | grep -v "^PASS" | tail -30 | tee "$OUT/memcheck.txt"
fi

PYTHONUNBUFFERED=1 python3 tools/gpu/model_ops_check.py --lib build/libltmodelops.so --out "$OUT" "$@"
