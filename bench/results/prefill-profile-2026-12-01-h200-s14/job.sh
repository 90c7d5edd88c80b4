#!/usr/bin/env bash
# #13: what bounds the wgmma prefill kernel (Nsight Compute, full set) at 8K and 32K, contiguous and paged; its SASS kept.
# (prof.tar.xz holds the four ncu reports and the SASS of the bf16 d 128 kernels; the SASS split
# by function was rough, so its per-kernel instruction counts printed at the time are not used.)
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/card.txt
NS="8192 32768" PAGED=1 timeout 300 tools/gpu/profile_prefill_attention.sh $OUT/prof
cuobjdump -sass build/Release/lighttransfer.node > /tmp/all.sass 2>/dev/null
cd $OUT && tar -cJf prof.tar.xz prof && rm -rf prof
