#!/usr/bin/env bash
# (#13) Branch decode-combine against main at batch 8, where call24 measured combine 1.9% / 1.0% faster at 4K / 16K
# in one round (ABBA once): two more rounds. Check out decode-combine before the call.
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
t0=$(date +%s)
for v in main combine; do xz -dc addons/$v.node.xz > /tmp/addon-$v.node; done
tar -xJf addons/dist-main.tar.xz
mkdir -p build/Release && cp /tmp/addon-combine.node build/Release/lighttransfer.node
PYTHONUNBUFFERED=1 timeout 90 python3 tools/make_llama8b.py /tmp/llama8b > /tmp/make.log 2>&1; echo "make exit $? at $(( $(date +%s) - t0 )) s"
ROUNDS=2 BATCHES=8 timeout 230 bash tools/gpu/ab_model_decode.sh /tmp/llama8b $OUT/ab8 main=/tmp/addon-main.node combine=/tmp/addon-combine.node > $OUT/ab8.txt 2>&1
echo "== ab8 exit $? at $(( $(date +%s) - t0 )) s"; sed -n '/^build/,$p' $OUT/ab8.txt
