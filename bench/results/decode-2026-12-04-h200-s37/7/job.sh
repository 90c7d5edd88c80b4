#!/usr/bin/env bash
# Session 37, job 7: the host's gap between batch-1 graph steps (gap.js: steps read back one by
# one against the same steps queued back to back), main's code, twice.
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz /tmp/o main=.device/addon-main.xz
checkpoint8b /tmp/llama8b
stamp "gap"
# .device/gap.js is this folder's gap.js, copied there for the call.
for i in 1 2; do
  LIGHTTRANSFER_ADDON=$ADDONS/main.node timeout 150 node .device/gap.js /tmp/llama8b 2>&1 | tail -3
done
stamp "done"
