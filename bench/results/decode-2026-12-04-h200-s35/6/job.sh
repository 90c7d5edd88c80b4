#!/usr/bin/env bash
# Session 35, job 6: decode attention on main (d2b04ab) alone: tools/gpu/run_decode.sh's checks
# against float64 PyTorch and its bandwidth table, to see that the kernel's changes since the table
# of 2026-11-26 cost nothing at long context.
set -u
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
mkdir -p /tmp/o
OUT=/tmp/o/decode timeout 420 tools/gpu/run_decode.sh > /tmp/o/run.txt 2>&1
echo "rc $?"; tail -45 /tmp/o/run.txt
(cd /tmp/o && tar -cJf "$OUT/job6.tar.xz" decode run.txt)
