#!/usr/bin/env bash
# On a GPU machine: how much of a whole prefill's wall time its kernels account for (bench/README.md,
# "What 1.5× would take"). First the prefills run alone, timed on the wall clock; then under Nsight
# Compute at the card's own clocks, and the last prefill's kernels (from its embedding launch on)
# are summed, grouped by kernel. Wall time minus that sum is time between kernels plus what the
# kernels lose in a sustained run: replayed one at a time, they never reach the card's power cap,
# which held an H200's SM clock at ~1550 MHz through whole prefills (bench/README.md, "Where the
# other ~14% goes").
#   tools/gpu/profile_prefill_kernels.sh MODEL_DIR [OUT_DIR]     (TOKENS default 4096)
# Expects node and ncu on PATH, node_modules unpacked, dist/ and the CUDA addon built.
set -euo pipefail
model=$1
out=${2:-${OUT:-/tmp/profile-prefill-kernels-out}}
tokens=${TOKENS:-4096}
mkdir -p "$out"
node tools/gpu/decode_steps.js "$model" "$tokens" 0 4 | tee "$out/wall-$tokens.txt"
ncu --clock-control none --csv --page raw --metrics gpu__time_duration.sum,dram__bytes_read.sum \
  node tools/gpu/decode_steps.js "$model" "$tokens" 0 2 > "$out/ncu-$tokens.csv" 2> "$out/ncu-$tokens.log" || {
  tail -20 "$out/ncu-$tokens.log"
  exit 1
}
python3 tools/gpu/summarize_ncu_step.py "$out/ncu-$tokens.csv" | tee "$out/kernels-$tokens.txt"
