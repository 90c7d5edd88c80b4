#!/usr/bin/env bash
# Session 35, job 2: the step timeline (diagnostic build of branch attn-prefetch) with decode
# attention's L2 prefetch of the o weights off, on, and on with the K/V read evict-first; 4K and 16K.
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz /tmp/o tl=.device/addon-pf-tl.xz
mkdir -p /tmp/o/timeline
checkpoint8b /tmp/llama8b
for ctx in 4096 16384; do
  for v in "p0:LT_ATTN_PREFETCH_PERCENT=0" "p100:LT_ATTN_PREFETCH_PERCENT=100" \
    "p100F:LT_ATTN_PREFETCH_PERCENT=100 LT_ATTN_KV_EVICT_FIRST=1" "p100L:LT_ATTN_PREFETCH_PERCENT=100 LT_ATTN_PREFETCH_POLICY=1"; do
    name=${v%%:*}
    stamp "$name $ctx"
    env ${v#*:} LT_TIMELINE_FILE=/tmp/o/timeline/steps-$ctx-$name.txt LT_TIMELINE_FIRST=8 LT_TIMELINE_LAST=9 \
      LIGHTTRANSFER_ADDON=$ADDONS/tl.node timeout 60 node tools/gpu/decode_steps.js /tmp/llama8b $ctx 10 > /dev/null
    echo "rc $?"
    python3 tools/gpu/step_timeline.py /tmp/o/timeline/steps-$ctx-$name.txt > /tmp/o/timeline/analysis-$ctx-$name.txt 2>&1
    xz -9 /tmp/o/timeline/steps-$ctx-$name.txt
  done
done
(cd /tmp/o && tar -cJf "$OUT/timeline.tar.xz" timeline card.txt make8b.txt)
stamp "done"
