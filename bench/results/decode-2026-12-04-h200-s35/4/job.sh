#!/usr/bin/env bash
# Session 35, job 4: decode attention with deeper K/V pipelines at d = 128 (LT_DECODE_STAGES 4-6:
# one CTA per SM, 16 splits a kv head at batch 1, stages - 1 tiles in flight) against main's 3
# stages (two CTAs per SM, 33 splits, two tiles in flight), batch-1 step in turns; then the decode
# kernel tests with 5 stages.
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz /tmp/o st=.device/addon-st.xz
mkdir -p /tmp/o/tests
checkpoint8b /tmp/llama8b
stamp "ab"
a=$ADDONS/st.node
ROUNDS=1 timeout 300 tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/o/ab s3=$a,LT_ATTN_PREFETCH_PERCENT=0 \
  s4=$a,LT_ATTN_PREFETCH_PERCENT=0,LT_DECODE_STAGES=4 s5=$a,LT_ATTN_PREFETCH_PERCENT=0,LT_DECODE_STAGES=5 \
  s6=$a,LT_ATTN_PREFETCH_PERCENT=0,LT_DECODE_STAGES=6
echo "ab rc $?"
stamp "tests"
LT_DECODE_STAGES=5 LIGHTTRANSFER_ADDON=$a timeout 120 node node_modules/jest/bin/jest.js --selectProjects gpu \
  --ci test/gpu/kernels-decode.test.ts > /tmp/o/tests/jest.txt 2>&1
echo "tests rc $?"; grep -E "^(PASS|FAIL)|^Tests:|✕" /tmp/o/tests/jest.txt | head -20
(cd /tmp/o && tar -cJf "$OUT/job4.tar.xz" ab tests card.txt make8b.txt)
stamp "done"
