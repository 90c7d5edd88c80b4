#!/usr/bin/env bash
# Session 38, job 3: the whole GPU suite and the exclusive project with the launch-ahead change.
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz $OUT ahead=.device/addon-ahead.xz
export LIGHTTRANSFER_ADDON=$ADDONS/ahead.node
stamp "gpu suite"
timeout 420 node node_modules/jest/bin/jest.js --selectProjects gpu --ci > $OUT/gpu.txt 2>&1
echo "gpu rc $?"
grep -E "✕|^Tests:|●" $OUT/gpu.txt | head -30
stamp "exclusive"
timeout 120 node node_modules/jest/bin/jest.js --selectProjects gpu-exclusive --ci > $OUT/exclusive.txt 2>&1
echo "exclusive rc $?"
grep -E "✕|^Tests:|●" $OUT/exclusive.txt | head -10
stamp "done"
