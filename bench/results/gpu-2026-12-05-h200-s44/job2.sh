#!/usr/bin/env bash
# Session 44 (prepared, not run: no card), job 2: the batch-1 model decode benchmark at 4K and
# 16K on addon-s44 (Session.generate launched ahead and not), after job 1 passed.
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz $OUT main=.device/addon-s44.xz
export LIGHTTRANSFER_ADDON=$ADDONS/main.node
checkpoint8b /tmp/llama8b
stamp "bench"
timeout 300 node dist/bench/model-decode.js /tmp/llama8b --batches 1 --contexts 4096,16384 --steps 48 --out $OUT/ours.json --md $OUT/table.md > $OUT/bench.txt 2>&1
echo "bench rc $?"
tail -12 $OUT/bench.txt
stamp "done"
