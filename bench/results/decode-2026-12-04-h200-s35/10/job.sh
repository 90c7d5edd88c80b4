#!/usr/bin/env bash
# Session 35, job 10: the q|k|v GEMV asks L2 for the K/V pages decode attention reads next
# (branch attn-prefetch, LT_KV_PREFETCH: 0 off, 1 before its wait, 2 once its last weights have
# arrived; LT_KV_PREFETCH_MAX_PAGES caps the pages a sequence), batch-1 step in turns (AB BA).
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz /tmp/o kvp=.device/addon-kvp.xz
checkpoint8b /tmp/llama8b
stamp "ab"
a=$ADDONS/kvp.node
ROUNDS=1 timeout 300 tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/o/ab k0=$a,LT_ATTN_PREFETCH_PERCENT=0,LT_KV_PREFETCH=0 \
  k1=$a,LT_ATTN_PREFETCH_PERCENT=0,LT_KV_PREFETCH=1 k2=$a,LT_ATTN_PREFETCH_PERCENT=0,LT_KV_PREFETCH=2 \
  k2c=$a,LT_ATTN_PREFETCH_PERCENT=0,LT_KV_PREFETCH=2,LT_KV_PREFETCH_MAX_PAGES=320
echo "ab rc $?"
(cd /tmp/o && tar -cJf "$OUT/job10.tar.xz" ab card.txt make8b.txt)
stamp "done"
