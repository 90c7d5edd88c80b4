#!/usr/bin/env bash
# Session 35, job 1: decode attention asks L2 for the o projection's weights (branch attn-prefetch),
# screened on the batch-1 step (AB BA), one addon under several settings.
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz /tmp/o pf=.device/addon-pf.xz
checkpoint8b /tmp/llama8b
stamp "ab"
a=$ADDONS/pf.node
ROUNDS=1 timeout 420 tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/o/ab p0=$a,LT_ATTN_PREFETCH_PERCENT=0 \
  p100=$a,LT_ATTN_PREFETCH_PERCENT=100 p100L=$a,LT_ATTN_PREFETCH_PERCENT=100,LT_ATTN_PREFETCH_POLICY=1 \
  p100F=$a,LT_ATTN_PREFETCH_PERCENT=100,LT_ATTN_KV_EVICT_FIRST=1 p50=$a,LT_ATTN_PREFETCH_PERCENT=50 \
  at1=$a,LT_ATTN_PREFETCH_PERCENT=100,LT_ATTN_PREFETCH_AT=1
echo "ab rc $?"
(cd /tmp/o && tar -cJf "$OUT/ab.tar.xz" ab make8b.txt card.txt)
stamp "done"
