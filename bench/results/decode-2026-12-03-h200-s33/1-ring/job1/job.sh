#!/usr/bin/env bash
# Session 33, job 1: the GEMV's weight ring (branch gemv-ring). Its kernel checks and timings
# against the register kernel (LIGHTTRANSFER_GEMV_STAGES=0) in tools/gpu/gemv_variants.py, the
# model and decode-graph GPU tests with the ring (the default), then the model's batch-1 decode
# step: registers against rings of 3 and 4 slots, in turns.
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz /tmp/o ring=.device/addon-s33-ring.xz
mkdir -p /tmp/o/tests /tmp/o/variants /tmp/o/ab
xz -dc .device/shim-s33-ring.so.xz > /tmp/libltmodelops.so
(checkpoint8b /tmp/llama8b) &
mk=$!
stamp "variants"
lib=/tmp/libltmodelops.so
cw=LT_LINEAR_CONSTANT_WEIGHT=1
timeout 170 python3 tools/gpu/gemv_variants.py --rows 1,2 --rounds 3 \
  --lib reg=$lib,LIGHTTRANSFER_GEMV_STAGES=0,$cw --lib ring2=$lib,LIGHTTRANSFER_GEMV_STAGES=2,$cw \
  --lib ring3=$lib,LIGHTTRANSFER_GEMV_STAGES=3,$cw --lib ring4=$lib,LIGHTTRANSFER_GEMV_STAGES=4,$cw \
  --lib ring6=$lib,LIGHTTRANSFER_GEMV_STAGES=6,$cw > /tmp/o/variants/variants.txt 2>&1
echo "variants rc $?"; tail -16 /tmp/o/variants/variants.txt
stamp "tests"
LIGHTTRANSFER_ADDON=$ADDONS/ring.node timeout 230 node node_modules/jest/bin/jest.js --selectProjects gpu --ci \
  test/gpu/decode-graph.test.ts test/gpu/model.test.ts > /tmp/o/tests/jest.txt 2>&1
echo "tests rc $?"; grep -E "^(PASS|FAIL)|^Tests:|✕" /tmp/o/tests/jest.txt | head -20
(cd /tmp/o && tar -cJf "$OUT/tests.tar.xz" tests variants card.txt)
wait $mk
stamp "ab"
ROUNDS=1 timeout 170 tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/o/ab reg=$ADDONS/ring.node,LIGHTTRANSFER_GEMV_STAGES=0 \
  ring3=$ADDONS/ring.node,LIGHTTRANSFER_GEMV_STAGES=3 ring4=$ADDONS/ring.node,LIGHTTRANSFER_GEMV_STAGES=4
echo "ab rc $?"
(cd /tmp/o && tar -cJf "$OUT/ab.tar.xz" ab make8b.txt)
stamp "done"
