#!/usr/bin/env bash
# Session 38, job 6: after the prefilling rule (no step launched ahead while a prompt is
# prefilled beside the batch): the session-reliability, decode-graph and hybrid GPU files, then
# serving under load with steps launched ahead and without, in turns (ahead, off, off, ahead).
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz $OUT ahead=.device/addon-ahead.xz
export LIGHTTRANSFER_ADDON=$ADDONS/ahead.node
stamp "tests"
timeout 200 node node_modules/jest/bin/jest.js --selectProjects gpu --ci test/gpu/session-reliability.test.ts test/gpu/decode-graph.test.ts test/gpu/hybrid.test.ts > $OUT/tests.txt 2>&1
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
LIGHTTRANSFER_LAUNCH_AHEAD=off serve off-2
stamp "serve ahead"
serve ahead-2
stamp "done"
