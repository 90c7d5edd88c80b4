#!/usr/bin/env bash
# Session 38, job 5: the batch-1 decode benchmark twice more (Session.generate launched ahead vs
# LIGHTTRANSFER_LAUNCH_AHEAD=off, in turns within each run), then serving under load, full caches,
# 4K prompts, with steps launched ahead and without (one server process each, in turns).
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz $OUT ahead=.device/addon-ahead.xz
export LIGHTTRANSFER_ADDON=$ADDONS/ahead.node
checkpoint8b /tmp/llama8b
for run in 1 2; do
  stamp "decode $run"
  timeout 150 node dist/bench/model-decode.js /tmp/llama8b --batches 1 --contexts 4096,16384 --steps 48 --out $OUT/decode-$run.json > $OUT/decode-$run.txt 2>&1
  echo "decode $run rc $?"
  tail -3 $OUT/decode-$run.txt
done
serve() {
  timeout 200 node dist/bench/serve.js --model /tmp/llama8b --kv-memory 40GiB --prompts 4096 --gen 128 \
    --rates 1,2,4,8 --max-rate 16 --requests 24 --modes full --out $OUT/serve-$1.json > $OUT/serve-$1.txt 2>&1
  echo "serve $1 rc $?"
  tail -8 $OUT/serve-$1.txt
}
stamp "serve ahead"
serve ahead
stamp "serve off"
LIGHTTRANSFER_LAUNCH_AHEAD=off serve off
stamp "done"
