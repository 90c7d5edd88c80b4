#!/usr/bin/env bash
# #13, job 7: the committed kernel (Q, K/V by the copy engine; the sink keys' own tile) against main's, float64 check,
# SDPA side by side, 5 rounds in turns, B=1 and B=4, extras; then the whole GPU suite on the addon built from it.
set -u
source .device/env.sh
source tools/gpu/job_setup.sh .device/nm-tests.tar.xz $OUT tma=.device/addon-tma.xz
for v in final main; do xz -dc .device/lp-$v.so.xz > /tmp/lp-$v.so; done
PYTHONUNBUFFERED=1 timeout 330 python3 tools/gpu/prefill_check.py --lib /tmp/lp-final.so --alt-lib main=/tmp/lp-main.so --out $OUT/prefill \
  --batches 1,4 --lengths 4096,8192,16384,32768 --rounds 5 > $OUT/prefill.txt 2>&1
echo "prefill check exit $?"; grep -E "correctness|FAILED" $OUT/prefill.txt | head -5; grep -E "streaming N=" $OUT/prefill.txt
stamp "suite"
LIGHTTRANSFER_ADDON=$ADDONS/tma.node timeout 220 node node_modules/jest/bin/jest.js --selectProjects gpu --ci > $OUT/gpu-suite.txt 2>&1
echo "gpu rc $?"; grep -E "^Tests:|^Test Suites:|✕" $OUT/gpu-suite.txt | head -20
stamp "done"
sed -n '/^| B/,/^$/p' $OUT/prefill/prefill.md
