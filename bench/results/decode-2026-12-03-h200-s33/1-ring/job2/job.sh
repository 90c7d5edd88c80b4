#!/usr/bin/env bash
# Session 33, job 2: the weight ring with the block's input rows staged in shared memory (branch
# gemv-ring, second form): kernel timings against the register kernel, then the model's batch-1
# step, registers against rings of 2 and 3 slots, in turns.
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz /tmp/o ring=.device/addon-s33-ring.xz
mkdir -p /tmp/o/variants /tmp/o/ab
xz -dc .device/shim-s33-ring.so.xz > /tmp/libltmodelops.so
(checkpoint8b /tmp/llama8b) &
mk=$!
stamp "variants"
lib=/tmp/libltmodelops.so
cw=LT_LINEAR_CONSTANT_WEIGHT=1
timeout 150 python3 tools/gpu/gemv_variants.py --rows 1,2 --rounds 3 \
  --lib reg=$lib,LIGHTTRANSFER_GEMV_STAGES=0,$cw --lib ring2=$lib,LIGHTTRANSFER_GEMV_STAGES=2,$cw \
  --lib ring3=$lib,LIGHTTRANSFER_GEMV_STAGES=3,$cw --lib ring4=$lib,LIGHTTRANSFER_GEMV_STAGES=4,$cw \
  > /tmp/o/variants/variants.txt 2>&1
echo "variants rc $?"; tail -13 /tmp/o/variants/variants.txt
(cd /tmp/o && tar -cJf "$OUT/variants.tar.xz" variants card.txt)
wait $mk
stamp "ab"
ROUNDS=1 timeout 170 tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/o/ab reg=$ADDONS/ring.node,LIGHTTRANSFER_GEMV_STAGES=0 \
  ring2=$ADDONS/ring.node,LIGHTTRANSFER_GEMV_STAGES=2 ring3=$ADDONS/ring.node,LIGHTTRANSFER_GEMV_STAGES=3
echo "ab rc $?"
(cd /tmp/o && tar -cJf "$OUT/ab.tar.xz" ab make8b.txt)
stamp "done"
