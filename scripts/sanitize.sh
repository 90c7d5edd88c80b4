#!/usr/bin/env bash
# Builds the addon with AddressSanitizer + UndefinedBehaviorSanitizer (CPU backend, into
# build-sanitize/) and runs the CPU test suite against it, child processes included. Node
# itself is not instrumented, so the ASan runtime is preloaded; leak detection is off because
# it would report Node's own allocations that live until exit, and ASan keeps its SIGSEGV
# handler (Node would install its own) so a wild access is reported, not just a crash. Any
# finding aborts the process that made it, which fails its test. Extra arguments go to jest
# (e.g. a test path).
set -euo pipefail
cd "$(dirname "$0")/.."
LIGHTTRANSFER_CUDA=off LIGHTTRANSFER_SANITIZE=on node scripts/build-native.js
npx tsc -p tsconfig.json
asan="$(${CXX:-g++} -print-file-name=libasan.so)"
ubsan="$(${CXX:-g++} -print-file-name=libubsan.so)"
export LD_PRELOAD="$asan:$ubsan"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1:allow_user_segv_handler=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LIGHTTRANSFER_ADDON="$PWD/build-sanitize/Release/lighttransfer.node"
# The RSS checks of test/reliability/memory.test.ts do not apply here: ASan holds freed memory
# in quarantine on purpose (and adds shadow memory), so that file runs in the regular suite only.
npx jest --selectProjects cpu --runInBand --testPathIgnorePatterns test/reliability/memory.test.ts "$@" 2>&1 | tee build-sanitize/jest.log
if grep -qE "ERROR: AddressSanitizer|runtime error:" build-sanitize/jest.log; then
  echo "sanitize: findings above" >&2
  exit 1
fi
