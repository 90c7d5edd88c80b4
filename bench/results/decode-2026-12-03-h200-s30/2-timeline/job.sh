#!/usr/bin/env bash
# Next session: the decode step's per-block timeline on the traced build (branch decode-timeline,
# built into .device/addon-trace.xz at 2e04343; its later commits change only the Python). Carry .device/node.xz, .device/addon-trace.xz,
# .device/nm.tar.xz, .device/env.sh, this file, dist; check out the branch's tools/gpu/decode_timeline.py
# (or run from the branch).
set -u
source .device/env.sh
tar -xJf .device/nm.tar.xz
mkdir -p build/Release /tmp/o/t4k /tmp/o/t16k
xz -dc .device/addon-trace.xz > build/Release/lighttransfer.node
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee /tmp/o/card.txt
python3 tools/make_llama8b.py /tmp/llama8b > /tmp/o/make8b.txt 2>&1; echo "make8b rc $?"
LT_TRACE_DIR=/tmp/o/t4k node tools/gpu/decode_steps.js /tmp/llama8b 4096 3 > /tmp/o/t4k/log.txt 2>&1; echo "4k rc $?"
LT_TRACE_DIR=/tmp/o/t16k node tools/gpu/decode_steps.js /tmp/llama8b 16384 3 > /tmp/o/t16k/log.txt 2>&1; echo "16k rc $?"
for c in t4k t16k; do echo "== $c"; python3 tools/gpu/decode_timeline.py /tmp/o/$c; done | tee /tmp/o/timeline.txt
(cd /tmp/o && tar -cJf "$OUT/timeline.tar.xz" t4k t16k timeline.txt card.txt)
