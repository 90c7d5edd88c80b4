#!/usr/bin/env bash
# Session 35, job 7: job 6's decode-attention table twice more, to see how far its short-context
# and ring points move from run to run.
set -u
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
mkdir -p /tmp/o
for r in 1 2; do
  OUT=/tmp/o/decode-$r timeout 200 tools/gpu/run_decode.sh > /tmp/o/run-$r.txt 2>&1
  echo "run $r rc $?"; grep -E "^\| +(1|8) \| +1K|^\| +[0-9]+ \| +[0-9.]+ \| +[0-9.]+ \| +[0-9.]+ \| +[0-9.]+ \| +[0-9.]+ \|$|checks:" /tmp/o/decode-$r/decode.md /tmp/o/run-$r.txt | head -20
done
(cd /tmp/o && tar -cJf "$OUT/job7.tar.xz" decode-1 decode-2 run-1.txt run-2.txt)
