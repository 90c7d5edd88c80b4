#!/usr/bin/env bash
# Session 42, job 5 (and 6): the whole GPU suite on this session's TypeScript at the time, native code unchanged (1188905's addon).
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz $OUT main=.device/addon-s41.xz
export LIGHTTRANSFER_ADDON=$ADDONS/main.node
stamp "gpu suite"
timeout 330 node node_modules/jest/bin/jest.js --selectProjects gpu --ci > $OUT/gpu.txt 2>&1
echo "gpu rc $?"
grep -E "✕|^Tests:|^Time:|●" $OUT/gpu.txt | head -30
stamp "done"
