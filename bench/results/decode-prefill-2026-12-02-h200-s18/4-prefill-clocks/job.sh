#!/usr/bin/env bash
# (#13) SM clock and power sampled every 20 ms while whole prefills run (ours, 4K and 16K; then ours + transformers through
# run_prefill_e2e.sh): is the gap between wall time and the sum of kernels timed alone the clock under sustained load?
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version,power.limit,clocks.max.sm --format=csv,noheader
t0=$(date +%s)
mkdir -p build/Release && xz -dc addons/small.node.xz > build/Release/lighttransfer.node
PYTHONUNBUFFERED=1 timeout 90 python3 tools/make_llama8b.py /tmp/llama8b > /tmp/make.log 2>&1; echo "make exit $? at $(( $(date +%s) - t0 )) s"
sample() { nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_event_reasons.active --format=csv,noheader,nounits -lms 20 > $1 & }
for n in 4096 16384; do
  sample $OUT/smi-ours-$n.csv; smi=$!
  node -e "console.log('start', Date.now())" > $OUT/ours-$n.txt
  timeout 120 node tools/gpu/decode_steps.js /tmp/llama8b $n 0 6 >> $OUT/ours-$n.txt 2>&1
  node -e "console.log('end', Date.now())" >> $OUT/ours-$n.txt
  kill $smi; echo "== ours $n at $(( $(date +%s) - t0 )) s"; grep -E "prefill [0-9]" $OUT/ours-$n.txt | tr '\n' ' '; echo
done
sample $OUT/smi-e2e.csv; smi=$!
CONTEXTS=4096,16384 timeout 300 bash tools/gpu/run_prefill_e2e.sh $OUT/e2e > $OUT/e2e.txt 2>&1
kill $smi; echo "== e2e exit at $(( $(date +%s) - t0 )) s"; grep -iE "prefill|tok/s" $OUT/e2e.txt | head -20
