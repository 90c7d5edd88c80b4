#!/usr/bin/env bash
# Session 30: the demo model adapted to its lazy layers (LightTransfer-Train style): trained on
# from models/demo with layers 4-7 (calibrate's choice) streaming, sink 4 + window 256, in half
# the steps; then transformers' reference and our whole eval at 4096 tokens (50 per cell).
set -u
start=$(date +%s)
t() { echo "[$(( $(date +%s) - start )) s] $*"; }
source .device/env.sh
tar -xJf .device/nm.tar.xz
mkdir -p build/Release /tmp/o
xz -dc .device/addon-main-s28.xz > build/Release/lighttransfer.node
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee /tmp/o/card.txt
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a /tmp/o/card.txt
MINUTES=5 STEPS="train reference eval" EVAL_CONFIG=bench/quality/demo-50.json timeout 560 \
  tools/gpu/demo_model_cycle.sh /tmp/o/L1 --init models/demo --stage-weights 0,0,1,1,3 --same-length-keys 0.5 \
  --recall-rows 0.5 --lr 1e-3 --warmup 50 --local-layers 4,5,6,7 --early-local-window 256 --early-local-share 0.5 \
  --eval-samples 25
echo "cycle rc $?"
t "pack"
(cd /tmp/o/L1 && tar -cJf "$OUT/model.tar.xz" demo)
(cd /tmp/o && tar -cJf "$OUT/rest.tar.xz" card.txt L1/train.log L1/reference L1/quality)
t "done"
