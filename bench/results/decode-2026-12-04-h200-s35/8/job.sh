#!/usr/bin/env bash
# Session 35, job 8: compute-sanitizer memcheck on main (d2b04ab) over the GEMV tests of the kernels
# changed since memcheck last ran (constantWeight's loads before the wait, thirty-first session):
# model.test.ts's fused-linear chains, constantWeight and weight-written-just-before cases, and
# decode-graph.test.ts's greedy steps of llama-tiny (the whole decode graph).
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz /tmp/o main=.device/addon-main.xz
compute-sanitizer --version | tail -1
a=$ADDONS/main.node
mkdir -p /tmp/o/memcheck
run() {
  local name=$1 file=$2 pattern=$3
  LIGHTTRANSFER_ADDON=$a timeout 170 compute-sanitizer --tool memcheck --error-exitcode 9 --target-processes all \
    node node_modules/jest/bin/jest.js --selectProjects gpu --ci -i --testTimeout=200000 -t "$pattern" "$file" \
    > /tmp/o/memcheck/$name.log 2>&1
  echo "$name rc $?"; grep -E "ERROR SUMMARY|^Tests:" /tmp/o/memcheck/$name.log | tail -3
}
stamp "memcheck"
run linear test/gpu/model.test.ts "a chain of fused linears|constantWeight gives|a weight written by the kernel just before"
run graph test/gpu/decode-graph.test.ts "llama-tiny: a greedy step|llama-tiny: decode steps"

(cd /tmp/o && tar -cJf "$OUT/job8.tar.xz" memcheck card.txt)
stamp "done"
