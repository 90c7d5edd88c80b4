#!/usr/bin/env bash
# On a GPU machine: issue #5's benchmark — decode throughput of hybrid (50% lazy) vs full caches
# at the largest batch one KV budget holds, on the random Llama-3-8B-shaped checkpoint, at 4K to
# 32K context. Expects node on PATH, node_modules unpacked, dist/ and the CUDA addon built.
#   tools/gpu/run_hybrid_bench.sh [OUT_DIR]     (MODEL_DIR default /tmp/llama8b, KV_MEMORY default 40GiB)
set -uo pipefail
out=${1:-${OUT:-/tmp/hybrid-bench-out}}
model=${MODEL_DIR:-/tmp/llama8b}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/card.txt"
if [ ! -f "$model/config.json" ]; then
  PYTHONUNBUFFERED=1 timeout 200 python3 tools/make_llama8b.py "$model" > "$out/make.log" 2>&1
  echo "make_llama8b exit $?"; tail -2 "$out/make.log"
fi
# Greedy steps (argmax on the device, what generation runs), then steps that read back every
# sequence's logits, for comparison.
for output in argmax logits; do
  suffix=$([ "$output" = argmax ] && echo "" || echo "-$output")
  timeout 300 node dist/bench/hybrid-throughput.js --model "$model" --kv-memory "${KV_MEMORY:-40GiB}" --output "$output" \
    --out "$out/hybrid-throughput$suffix.json" --plot "$out/hybrid-throughput$suffix.svg" 2>&1 | tee "$out/hybrid-throughput$suffix.txt"
done
