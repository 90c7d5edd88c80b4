#!/usr/bin/env bash
# Session 38, job 1: the launch-ahead change (Decoder.launchGreedy, Tensor.readLater, the
# stepper) on the card: its GPU tests with the decode-graph and session-reliability files, then
# the model decode benchmark at batch 1 (graph step, launched-ahead step, Session.generate with
# and without launching ahead).
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz $OUT ahead=.device/addon-ahead.xz
export LIGHTTRANSFER_ADDON=$ADDONS/ahead.node
stamp "tests"
timeout 200 node node_modules/jest/bin/jest.js --selectProjects gpu --ci test/gpu/session-reliability.test.ts test/gpu/decode-graph.test.ts > $OUT/tests.txt 2>&1
echo "tests rc $?"
grep -E "✕|Tests:|●" $OUT/tests.txt | head -30
checkpoint8b /tmp/llama8b
stamp "bench"
timeout 240 node dist/bench/model-decode.js /tmp/llama8b --batches 1 --contexts 4096,16384 --steps 48 --out $OUT/ours.json --md $OUT/table.md > $OUT/bench.txt 2>&1
echo "bench rc $?"
tail -22 $OUT/bench.txt
stamp "done"
