#!/usr/bin/env bash
# On a GPU machine: Nsight Compute's full section set for one causal prefill attention call (the
# default kernel: wgmma on an H100/H200), hq 32, hkv 8, d 128, bf16, at each N of NS, with
# contiguous K/V and, with PAGED=1, with the first half of the keys read through a page table.
# Prints the figures that say what bounds the kernel: the busiest pipe, issue utilisation,
# eligible warps, DRAM and L2 traffic (the reports under OUT_DIR hold the rest).
#   [NS="8192 32768"] [PAGED=1] tools/gpu/profile_prefill_attention.sh [OUT_DIR]
# Expects node and ncu on PATH, node_modules unpacked, dist/ and the CUDA addon built.
set -euo pipefail
out=${1:-${OUT:-/tmp/profile-prefill-attention-out}}
mkdir -p "$out"
layouts="contiguous"
[ "${PAGED:-0}" = 1 ] && layouts="contiguous paged"
for n in ${NS:-8192 32768}; do
  for layout in $layouts; do
    name="$out/ncu-$n-$layout"
    ncu --set full --kernel-name regex:prefill --launch-skip 1 --launch-count 1 --import-source no \
      node tools/gpu/prefill_attention_once.js "$n" "$layout" 2 > "$name.txt" 2> "$name.err" || {
      tail -20 "$name.err"
      exit 1
    }
    echo "== N=$n $layout"
    grep -E "^\s+(Duration|Compute \(SM\) Throughput|Memory Throughput|DRAM Throughput|L2 Hit Rate|Issue Slots Busy|Issued Ipc Active|No Eligible|Active Warps Per Scheduler|Eligible Warps Per Scheduler|Warp Cycles Per Issued Instruction|Executed Instructions|Registers Per Thread) " "$name.txt" | sed 's/  */ /g' || true
    grep -E "highest-utilized" "$name.txt" | cut -c1-200 || true
  done
done
