#!/usr/bin/env bash
# End-to-end prefill of the Llama-3-8B shape on a GPU machine: our engine (node dist/bench/prefill.js)
# and transformers with SDPA (tools/hf_decode_bench.py) on the same random-weight checkpoint, in
# one job, then one 32K prompt in one chunk beside the default chunking.
#   tools/gpu/run_prefill_e2e.sh [OUT_DIR]       (CONTEXTS default 4096,16384,32768)
# Expects node on PATH, node_modules unpacked, dist/ and the CUDA addon built; writes the
# checkpoint to /tmp/llama8b (16 GB) unless it is there already.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:-${OUT:-/tmp/prefill-e2e}}
contexts=${CONTEXTS:-4096,16384,32768}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/card.txt"
[ -f /tmp/llama8b/config.json ] || python3 tools/make_llama8b.py /tmp/llama8b > "$out/make8b.txt" 2>&1 || exit 1
node dist/bench/prefill.js /tmp/llama8b --contexts "$contexts" --prompts 4 --out "$out/prefill-e2e.json"
python3 tools/hf_decode_bench.py /tmp/llama8b --out "$out/hf.json" --batches 1 --contexts "$contexts" \
  --steps 2 --warmup 1 > "$out/hf.txt" 2>&1
grep prefill "$out/hf.txt"
node dist/bench/prefill.js /tmp/llama8b --contexts 32768 --chunks 16384,32768 --prompts 3
