#!/usr/bin/env bash
# On a GPU machine: where the host's time goes during prefills, to tell whether prefill is bound
# by the GPU or by the JS and native calls that enqueue its work. Runs bench/prefill.ts under
# node's CPU profiler and prints the functions with the most self time; time the JS thread spends
# waiting for the GPU shows up in the call that reads the logits back (toFloat32Array).
#   tools/gpu/profile_prefill.sh MODEL_DIR [OUT_DIR]     (CONTEXTS default 4096,16384, CHUNKS default 4096)
# Expects node on PATH, node_modules unpacked, dist/ and the CUDA addon built.
set -euo pipefail
model=$1
out=${2:-${OUT:-/tmp/profile-prefill-out}}
mkdir -p "$out"
node --cpu-prof --cpu-prof-dir "$out" dist/bench/prefill.js "$model" --contexts "${CONTEXTS:-4096,16384}" \
  --chunks "${CHUNKS:-4096}" --prompts 4 | tee "$out/prefill.txt"
node tools/gpu/summarize_cpuprofile.js "$out"/*.cpuprofile | tee "$out/profile.txt"
