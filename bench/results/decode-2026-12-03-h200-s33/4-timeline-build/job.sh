#!/usr/bin/env bash
# Session 33, job 5: the step timeline as built on main (LT_STEP_TIMELINE=ON, build-timeline/):
# two batch-1 graph steps at 4K dumped and read by tools/gpu/step_timeline.py.
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz /tmp/o tl=.device/addon-s33-tl.xz
mkdir -p /tmp/o/timeline
checkpoint8b /tmp/llama8b
stamp "timeline"
LT_TIMELINE_FILE=/tmp/o/timeline/steps-4096.txt LT_TIMELINE_FIRST=8 LT_TIMELINE_LAST=9 \
  LIGHTTRANSFER_ADDON=$ADDONS/tl.node timeout 60 node tools/gpu/decode_steps.js /tmp/llama8b 4096 10
echo "rc $?"
python3 tools/gpu/step_timeline.py /tmp/o/timeline/steps-4096.txt | tee /tmp/o/timeline/analysis-4096.txt
xz -9 /tmp/o/timeline/steps-4096.txt
(cd /tmp/o && tar -cJf "$OUT/timeline.tar.xz" timeline card.txt make8b.txt)
stamp "done"
