#!/usr/bin/env bash
# Session 35, job 3: the GEMV's grid balanced (LT_GEMV_BALANCED=1: as many blocks as give every
# block the same number of row groups, 512 instead of 528 for every projection of a layer) timed
# against main's grid on the batch-1 step (ABBA x 2), then the step timeline of both at 4K and 16K.
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz /tmp/o bal=.device/addon-bal.xz tl=.device/addon-bal-tl.xz
mkdir -p /tmp/o/timeline
checkpoint8b /tmp/llama8b
stamp "ab"
a=$ADDONS/bal.node
ROUNDS=2 timeout 300 tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/o/ab b0=$a,LT_ATTN_PREFETCH_PERCENT=0 \
  b1=$a,LT_ATTN_PREFETCH_PERCENT=0,LT_GEMV_BALANCED=1
echo "ab rc $?"
for ctx in 4096 16384; do
  for v in "b0:LT_GEMV_BALANCED=0" "b1:LT_GEMV_BALANCED=1"; do
    name=${v%%:*}
    env ${v#*:} LT_ATTN_PREFETCH_PERCENT=0 LT_TIMELINE_FILE=/tmp/o/timeline/steps-$ctx-$name.txt LT_TIMELINE_FIRST=8 \
      LT_TIMELINE_LAST=9 LIGHTTRANSFER_ADDON=$ADDONS/tl.node timeout 60 node tools/gpu/decode_steps.js /tmp/llama8b $ctx 10 > /dev/null
    echo "timeline $name $ctx rc $?"
    python3 tools/gpu/step_timeline.py /tmp/o/timeline/steps-$ctx-$name.txt > /tmp/o/timeline/analysis-$ctx-$name.txt 2>&1
    xz -9 /tmp/o/timeline/steps-$ctx-$name.txt
  done
done
(cd /tmp/o && tar -cJf "$OUT/job3.tar.xz" ab timeline card.txt make8b.txt)
for f in /tmp/o/timeline/analysis-*.txt; do echo "== $f"; sed -n 3,9p $f; done
stamp "done"
