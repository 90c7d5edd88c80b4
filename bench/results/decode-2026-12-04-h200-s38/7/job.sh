#!/usr/bin/env bash
# Session 38, job 7: after step() waits for prefill work queued behind its launched-ahead step
# (synchronize): the session-reliability, decode-graph, hybrid and model GPU files, then serving
# under load with steps launched ahead and without, in turns (ahead, off, ahead).
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz $OUT ahead=.device/addon-ahead.xz
export LIGHTTRANSFER_ADDON=$ADDONS/ahead.node
stamp "tests"
timeout 200 node node_modules/jest/bin/jest.js --selectProjects gpu --ci test/gpu/session-reliability.test.ts test/gpu/decode-graph.test.ts test/gpu/hybrid.test.ts test/gpu/model.test.ts > $OUT/tests.txt 2>&1
echo "tests rc $?"
grep -E "✕|^Tests:|●" $OUT/tests.txt | head -20
checkpoint8b /tmp/llama8b
serve() {
  timeout 150 node dist/bench/serve.js --model /tmp/llama8b --kv-memory 40GiB --prompts 4096 --gen 128 \
    --rates 1,2,4,8 --max-rate 16 --requests 24 --modes full --out $OUT/serve-$1.json > $OUT/serve-$1.txt 2>&1
  echo "serve $1 rc $?"
  grep -E "^full " $OUT/serve-$1.txt
}
stamp "serve ahead"
serve ahead-1
stamp "serve off"
LIGHTTRANSFER_LAUNCH_AHEAD=off serve off-1
stamp "serve ahead"
serve ahead-2
stamp "done"
