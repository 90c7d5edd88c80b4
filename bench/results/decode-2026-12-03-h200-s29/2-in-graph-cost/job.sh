#!/usr/bin/env bash
# Session 29, call 2: what one more launch of each decode kernel costs inside the step's graph (a
# diagnostic build: env vars launch decode attention, the q|k|v GEMV or the gate|up GEMV twice, or
# an empty programmatic kernel after attention), in turns; then Nsight Compute on the q|k|v and
# gate|up GEMVs of one step.
set -u
start=$(date +%s)
t() { echo "[$(( $(date +%s) - start )) s] $*"; }
source .device/env.sh
tar -xJf .device/nm.tar.xz
mkdir -p build/Release /tmp/o/ab
xz -dc .device/addon-exp.xz > build/Release/lighttransfer.node
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee /tmp/o/card.txt
python3 tools/make_llama8b.py /tmp/llama8b > /tmp/o/make8b.txt 2>&1; echo "make8b rc $?"
t "made"
declare -A envs=([base]="" [attn]=LT_EXPERIMENT_DUP_ATTENTION [qkv]=LT_EXPERIMENT_DUP_QKV [gateup]=LT_EXPERIMENT_DUP_GATEUP [empty]=LT_EXPERIMENT_EMPTY_KERNEL)
order=(base attn qkv gateup empty empty gateup qkv attn base)
run=0
for name in "${order[@]}"; do
  run=$((run + 1))
  var=${envs[$name]}
  ( [ -n "$var" ] && export "$var=1"; timeout 60 node dist/bench/model-decode.js /tmp/llama8b --batches 1 --contexts 4096,16384 \
      --out /tmp/o/ab/ab-1-$run-$name.json > /tmp/o/ab/ab-1-$run-$name.txt 2>&1 ) ; echo "run $run $name rc $?"
done
python3 tools/gpu/summarize_ab_decode.py /tmp/o/ab base attn qkv gateup empty 2>&1 | tee /tmp/o/ab/ab.txt
(cd /tmp/o && tar -cJf "$OUT/ab.tar.xz" ab card.txt make8b.txt)
t "ncu"
timeout 90 ncu --clock-control none --set full --kernel-name-base demangled --kernel-name 'regex:Epilogue\)(2|3)' \
  --launch-skip 80 --launch-count 2 -o /tmp/o/gemv node tools/gpu/decode_steps.js /tmp/llama8b 4096 2 > /tmp/o/ncu-gemv.txt 2>&1
echo "ncu rc $?"; tail -3 /tmp/o/ncu-gemv.txt
ncu --import /tmp/o/gemv.ncu-rep --page raw --metrics gpu__time_duration.sum,sm__cycles_active.avg,sm__cycles_active.min,sm__cycles_active.max,sm__cycles_elapsed.avg,dram__bytes_read.sum.per_second,dram__bytes_read.sum,launch__grid_size,launch__registers_per_thread,smsp__average_warp_latency_issue_stalled_long_scoreboard,sm__warps_active.avg.pct_of_peak_sustained_active 2>&1 | grep -v "^==" | tail -30
ncu --import /tmp/o/gemv.ncu-rep --page details 2>&1 > /tmp/o/gemv-details.txt
(cd /tmp/o && tar -cJf "$OUT/ncu.tar.xz" gemv.ncu-rep ncu-gemv.txt gemv-details.txt)
t "done"
