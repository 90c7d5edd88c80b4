#!/usr/bin/env bash
# #13: the batch-1 decode step of the random Llama-3-8B shape (4K and 16K contexts) with main's addon and the branches': gemv-wide (the GEMV with k split over a block) and decode-next (gemv-wide + decode-pdl), each under LIGHTTRANSFER_GEMM=auto and =gemv; every run checks its logits against transformers. One round per call (ROUND=1, 2, ...); the checkpoint is made once per machine.
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/card.txt
t0=$(date +%s)
for v in main wide next; do xz -dc .device/next/addon-$v.node.xz > /tmp/addon-$v.node; done
if [ ! -f /tmp/llama8b/reference.json ]; then
  PYTHONUNBUFFERED=1 timeout 130 python3 tools/make_llama8b.py /tmp/llama8b > /tmp/make.log 2>&1
  echo "make_llama8b exit $? at $(( $(date +%s) - t0 )) s"; tail -2 /tmp/make.log
fi
r=${ROUND:-1}
for run in main:auto wide:auto wide:gemv next:auto next:gemv; do
  v=${run%%:*}; g=${run#*:}
  LIGHTTRANSFER_ADDON=/tmp/addon-$v.node LIGHTTRANSFER_GEMM=$g timeout 100 node dist/bench/model-decode.js /tmp/llama8b --batches 1 \
    --contexts 4096,16384 --out $OUT/md-$r-$v-$g.json > /tmp/md-$r-$v-$g.txt 2>&1
  echo "== round $r $v $g exit $? at $(( $(date +%s) - t0 )) s"; grep -E "^ +1 +(4096|16384) " /tmp/md-$r-$v-$g.txt | cut -c1-175
  grep -iE "correctness" /tmp/md-$r-$v-$g.txt | cut -c1-220
done
echo "total $(( $(date +%s) - t0 )) s"
