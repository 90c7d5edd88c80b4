#!/usr/bin/env bash
# (#13) 1) prefill under Nsight Systems: the kernels' own durations inside the real run (clocks under load) vs the wall,
# 4K and 16K (addon small = the decode-small branch). 2) gemv-prefetch: linear tests + ABBA x2 against small.
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version,power.limit,clocks.max.sm --format=csv,noheader
t0=$(date +%s)
for v in small gprefetch; do xz -dc addons/$v.node.xz > /tmp/addon-$v.node; done
mkdir -p build/Release && cp /tmp/addon-small.node build/Release/lighttransfer.node
PYTHONUNBUFFERED=1 timeout 90 python3 tools/make_llama8b.py /tmp/llama8b > /tmp/make.log 2>&1; echo "make exit $? at $(( $(date +%s) - t0 )) s"
which nsys || ls /usr/local/cuda/bin | grep -i nsys
for n in 4096 16384; do
  (nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv,noheader -lms 50 > $OUT/smi-$n.csv) & smi=$!
  timeout 150 nsys profile -o /tmp/nsys-$n --force-overwrite true --trace cuda node tools/gpu/decode_steps.js /tmp/llama8b $n 0 4 > $OUT/nsys-$n.txt 2>&1
  echo "== nsys $n exit $? at $(( $(date +%s) - t0 )) s"; kill $smi; grep -E "prefill [0-9]" $OUT/nsys-$n.txt
  timeout 60 nsys stats --report cuda_gpu_kern_sum,cuda_gpu_trace --format csv -o $OUT/stats-$n /tmp/nsys-$n.nsys-rep > /dev/null 2>&1; echo "stats exit $?"
  sort -t, -k2 -n $OUT/smi-$n.csv | awk -F, 'NR>1{print $2}' | sort | uniq -c | sort -rn | head -4
done
ls $OUT
cp /tmp/addon-gprefetch.node build/Release/lighttransfer.node
timeout 150 node node_modules/jest/bin/jest.js --selectProjects gpu --ci test/gpu/model.test.ts -t "linear" > $OUT/linear-gprefetch.txt 2>&1
echo "linear tests (gprefetch) exit $? at $(( $(date +%s) - t0 )) s"; grep -E "^Tests:" $OUT/linear-gprefetch.txt; grep -E "✕" $OUT/linear-gprefetch.txt | head -5
timeout 200 bash tools/gpu/ab_model_decode.sh /tmp/llama8b $OUT/ab small=/tmp/addon-small.node gprefetch=/tmp/addon-gprefetch.node > $OUT/ab.txt 2>&1
echo "== ab exit $? at $(( $(date +%s) - t0 )) s"; sed -n '/^build/,$p' $OUT/ab.txt
