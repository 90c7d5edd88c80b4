#!/usr/bin/env bash
# Session 35, job 5: main (d2b04ab) on the card: the whole GPU suite, the exclusive GPU tests, and
# one batch-1 model-decode run.
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz /tmp/o main=.device/addon-main.xz
mkdir -p /tmp/o/tests /tmp/o/bench
a=$ADDONS/main.node
stamp "suite"
LIGHTTRANSFER_ADDON=$a timeout 300 node node_modules/jest/bin/jest.js --selectProjects gpu --ci > /tmp/o/tests/jest-gpu.txt 2>&1
echo "gpu rc $?"; grep -E "^(PASS|FAIL)|^Tests:|^Test Suites:|✕" /tmp/o/tests/jest-gpu.txt | head -30
LIGHTTRANSFER_ADDON=$a timeout 120 node node_modules/jest/bin/jest.js --selectProjects gpu-exclusive --ci > /tmp/o/tests/jest-exclusive.txt 2>&1
echo "exclusive rc $?"; grep -E "^(PASS|FAIL)|^Tests:|✕" /tmp/o/tests/jest-exclusive.txt | head
stamp "bench"
checkpoint8b /tmp/llama8b
LIGHTTRANSFER_ADDON=$a timeout 120 node dist/bench/model-decode.js /tmp/llama8b --batches 1 --contexts 4096,16384 \
  --out /tmp/o/bench/model-decode.json > /tmp/o/bench/model-decode.txt 2>&1
echo "bench rc $?"; grep -E "batch 1 context|pass" /tmp/o/bench/model-decode.txt | head
(cd /tmp/o && tar -cJf "$OUT/job5.tar.xz" tests bench card.txt make8b.txt)
stamp "done"
