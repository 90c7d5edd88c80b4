#!/usr/bin/env bash
# Session 33, job 3: the timeline of two consecutive batch-1 decode steps (branch step-timeline:
# every block of every GEMV and decode-attention launch writes its entry, wait and exit times),
# at 4K and 16K, then the same build's step times (bench/model-decode.ts, timeline off).
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz /tmp/o timeline=.device/addon-s33-timeline.xz
mkdir -p /tmp/o/timeline
checkpoint8b /tmp/llama8b
for ctx in 4096 16384; do
  stamp "timeline $ctx"
  LT_TIMELINE_FILE=/tmp/o/timeline/steps-$ctx.txt LT_TIMELINE_FIRST=8 LT_TIMELINE_LAST=9 \
    LIGHTTRANSFER_ADDON=$ADDONS/timeline.node timeout 120 node tools/gpu/decode_steps.js /tmp/llama8b $ctx 10
  echo "rc $?"; wc -l /tmp/o/timeline/steps-$ctx.txt
done
stamp "bench"
LIGHTTRANSFER_ADDON=$ADDONS/timeline.node timeout 120 node dist/bench/model-decode.js /tmp/llama8b --batches 1 \
  --contexts 4096,16384 > /tmp/o/timeline/bench.txt 2>&1
echo "bench rc $?"; grep "batch 1 context" /tmp/o/timeline/bench.txt
(cd /tmp/o && tar -cJf "$OUT/timeline.tar.xz" timeline card.txt make8b.txt)
stamp "done"
