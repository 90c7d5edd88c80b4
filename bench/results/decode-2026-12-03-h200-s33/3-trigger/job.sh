#!/usr/bin/env bash
# Session 33, job 4: where a GEMV block lets the next kernel launch (branch gemv-trigger,
# LIGHTTRANSFER_GEMV_TRIGGER: 0 as main, 1 at its last group's start, 2 after its wait), timed on
# the batch-1 step in turns (ABBA x 2), the step timeline under 1 and 2 (branch trigger-timeline),
# then the decode-graph and model GPU tests with 2.
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz /tmp/o trigger=.device/addon-s33-trigger.xz \
  timeline=.device/addon-s33-trigger-timeline.xz
mkdir -p /tmp/o/timeline /tmp/o/tests
checkpoint8b /tmp/llama8b
stamp "ab"
a=$ADDONS/trigger.node
ROUNDS=2 timeout 270 tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/o/ab t0=$a,LIGHTTRANSFER_GEMV_TRIGGER=0 \
  t1=$a,LIGHTTRANSFER_GEMV_TRIGGER=1 t2=$a,LIGHTTRANSFER_GEMV_TRIGGER=2
echo "ab rc $?"
for t in 1 2; do
  LIGHTTRANSFER_GEMV_TRIGGER=$t LT_TIMELINE_FILE=/tmp/o/timeline/steps-4096-t$t.txt LT_TIMELINE_FIRST=8 \
    LT_TIMELINE_LAST=9 LIGHTTRANSFER_ADDON=$ADDONS/timeline.node timeout 60 node tools/gpu/decode_steps.js \
    /tmp/llama8b 4096 10 > /dev/null
  echo "timeline t$t rc $?"
done
(cd /tmp/o && tar -cJf "$OUT/ab.tar.xz" ab timeline make8b.txt card.txt)
stamp "tests"
LIGHTTRANSFER_GEMV_TRIGGER=2 LIGHTTRANSFER_ADDON=$a timeout 260 node node_modules/jest/bin/jest.js --selectProjects gpu \
  --ci test/gpu/decode-graph.test.ts test/gpu/model.test.ts > /tmp/o/tests/jest.txt 2>&1
echo "tests rc $?"; grep -E "^(PASS|FAIL)|^Tests:|✕" /tmp/o/tests/jest.txt | head -20
(cd /tmp/o && tar -cJf "$OUT/tests.tar.xz" tests)
stamp "done"
