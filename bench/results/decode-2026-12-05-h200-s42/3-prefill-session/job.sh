#!/usr/bin/env bash
# Session 42, job 3: Session.generate's prefill (a unit per event-loop turn) against decoder.prefill, 8B shape.
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz $OUT main=.device/addon-s41.xz
export LIGHTTRANSFER_ADDON=$ADDONS/main.node
checkpoint8b /tmp/llama8b
stamp "prefill"
timeout 200 node .device/prefill-session.js /tmp/llama8b > $OUT/prefill-session.txt 2>&1
echo "rc $?"; cat $OUT/prefill-session.txt
stamp "done"
