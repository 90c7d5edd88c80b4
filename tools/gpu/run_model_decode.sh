#!/usr/bin/env bash
# On a GPU machine: the model-decode benchmark of bench/README.md ("Model decode (Llama-3-8B
# shape)") in one job — make the random Llama-3-8B-shaped checkpoint and transformers' reference
# logits, run the GPU tests of the decode path, then transformers' grid and ours; our table last.
#   tools/gpu/run_model_decode.sh [OUT_DIR]
# Expects node on PATH, node_modules unpacked, dist/ and the CUDA addon built elsewhere
# (LIGHTTRANSFER_ADDON may point at it). MODEL_DIR (default /tmp/llama8b) keeps the checkpoint
# between runs on the same machine; BENCH_ARGS is passed to both benchmarks; GPU_TESTS picks
# the jest files.
set -uo pipefail
out=${1:-${OUT:-/tmp/model-decode-out}}
model=${MODEL_DIR:-/tmp/llama8b}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem,driver_version --format=csv,noheader | tee "$out/card.txt"
if [ ! -f "$model/reference.json" ]; then
  PYTHONUNBUFFERED=1 timeout 100 python3 tools/make_llama8b.py "$model" > "$out/make.log" 2>&1
  echo "make_llama8b exit $?"; tail -3 "$out/make.log"
fi
timeout 120 node node_modules/jest/bin/jest.js --selectProjects gpu --ci ${GPU_TESTS:-test/gpu/decode-graph.test.ts test/gpu/model.test.ts} \
  > "$out/gpu-tests.log" 2>&1
echo "gpu tests exit $?"; grep -E "^(Tests|Test Suites):|✕" "$out/gpu-tests.log"
PYTHONUNBUFFERED=1 timeout 120 python3 tools/hf_decode_bench.py "$model" --out "$out/hf.json" ${BENCH_ARGS:-} > "$out/hf.log" 2>&1
echo "transformers bench exit $?"; tail -2 "$out/hf.log"
timeout 180 node dist/bench/model-decode.js "$model" --hf "$out/hf.json" --out "$out/ours.json" --md "$out/table.md" ${BENCH_ARGS:-} \
  > "$out/ours.log" 2>&1
echo "our bench exit $?"; tail -25 "$out/ours.log"
