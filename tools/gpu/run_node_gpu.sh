#!/usr/bin/env bash
# On a GPU machine without npm or network: run the Node GPU test suite, a small suite under
# compute-sanitizer, and the kernel benchmark on cuda:0. Expects node on PATH (the caller
# provides it), node_modules unpacked, and build/ + dist/ built elsewhere with the CUDA backend.
#   tools/gpu/run_node_gpu.sh [OUT_DIR]
set -uo pipefail
out=${1:-${OUT:-/tmp/lt-gpu-out}}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/card.txt"
node -e 'const l=require("./dist/lib"); console.log(JSON.stringify(l.cudaStatus()), JSON.stringify(l.devices()[1]))'
jest="node node_modules/jest/bin/jest.js"
$jest --selectProjects gpu --ci 2>&1 | tee "$out/gpu-tests.log"
status=${PIPESTATUS[0]}
# A small suite under memcheck: the cache operations and the standalone lazy ratio (fast enough
# to run instrumented), plus one prefill and one decode case, and prefill over a paged prefix
# (full cache with pages of 7 tokens; a ring).
timeout 240 compute-sanitizer --tool memcheck --error-exitcode 9 --target-processes all \
  $jest --selectProjects gpu --ci -i -t "cache operations|standalone lazy ratio|nq=63 nk=63|hq=8 hkv=8 d=64 f16|start=77 |start=900 " \
  > "$out/memcheck.log" 2>&1
memcheck=$?
grep -E "ERROR SUMMARY|Tests:" "$out/memcheck.log"
node dist/bench/kernels.js --device cuda:0 2>&1 | tee "$out/bench-kernels-cuda.txt"
echo "gpu tests exit $status, memcheck exit $memcheck"
[ "$status" = 0 ] && [ "$memcheck" = 0 ]
