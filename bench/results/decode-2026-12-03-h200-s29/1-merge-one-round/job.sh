#!/usr/bin/env bash
# Session 29, call 1: the merge branch checked and timed against main.
set -u
start=$(date +%s)
t() { echo "[$(( $(date +%s) - start )) s] $*"; }
source .device/env.sh
tar -xJf .device/nm-tests.tar.xz
mkdir -p build/Release /tmp/addons /tmp/o
xz -dc .device/addon-main-s28.xz > /tmp/addons/main.node
xz -dc .device/addon-merge.xz > /tmp/addons/merge.node
cp /tmp/addons/main.node build/Release/lighttransfer.node
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee /tmp/o/card.txt
(python3 tools/make_llama8b.py /tmp/llama8b > /tmp/o/make8b.txt 2>&1; echo "make8b rc $?" >> /tmp/o/make8b.txt) &
mk=$!
t "jest decode tests on merge"
mkdir -p /tmp/o/tests
LIGHTTRANSFER_ADDON=/tmp/addons/merge.node timeout 200 node node_modules/jest/bin/jest.js --selectProjects gpu --ci \
  test/gpu/kernels-decode.test.ts test/gpu/decode-graph.test.ts test/gpu/model.test.ts > /tmp/o/tests/jest.txt 2>&1
echo "jest rc $?" | tee -a /tmp/o/tests/jest.txt; tail -8 /tmp/o/tests/jest.txt
wait $mk; tail -2 /tmp/o/make8b.txt
t "ab"
ROUNDS=2 timeout 300 tools/gpu/ab_model_decode.sh /tmp/llama8b /tmp/o/ab main=/tmp/addons/main.node merge=/tmp/addons/merge.node
echo "ab rc $?"
(cd /tmp/o && tar -cJf "$OUT/ab-tests.tar.xz" ab tests card.txt make8b.txt)
t "memcheck"
LIGHTTRANSFER_ADDON=/tmp/addons/merge.node timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 --target-processes all \
  node node_modules/jest/bin/jest.js --selectProjects gpu --ci test/gpu/kernels-decode.test.ts > /tmp/o/memcheck.txt 2>&1
echo "memcheck rc $?"; tail -15 /tmp/o/memcheck.txt
cp /tmp/o/memcheck.txt "$OUT/"
t "ncu"
for b in main merge; do
  LIGHTTRANSFER_ADDON=/tmp/addons/$b.node timeout 60 ncu --clock-control none --set full --kernel-name regex:decodeKernel \
    --launch-skip 40 --launch-count 1 -o /tmp/o/decode-$b node tools/gpu/decode_steps.js /tmp/llama8b 4096 2 > /tmp/o/ncu-$b.txt 2>&1
  echo "ncu $b rc $?"
  ncu --import /tmp/o/decode-$b.ncu-rep --page raw --metrics gpu__time_duration.sum,sm__cycles_active.avg,sm__cycles_active.min,sm__cycles_active.max,sm__cycles_elapsed.avg,dram__bytes_read.sum.per_second,launch__registers_per_thread 2>&1 | tail -12
done
(cd /tmp/o && tar -cJf "$OUT/ncu.tar.xz" decode-*.ncu-rep ncu-*.txt)
t "done"
