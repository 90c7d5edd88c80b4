#!/usr/bin/env bash
# On a GPU machine: the whole Node GPU suite under compute-sanitizer, memcheck and racecheck.
# Each (tool, shard) pair runs in its own process, all at once, spread over the visible GPUs, so
# the slowest shard bounds the wall time. A shard is a test file, or a test-name pattern within
# one where the file alone would run too long instrumented; the table ends with each file's test
# count summed over its shards, to compare with a plain run. The files under test/gpu/exclusive
# fill the card, so they run afterwards, one at a time, on the first GPU. Expects node on PATH,
# node_modules unpacked, and build/ + dist/ built elsewhere with the CUDA backend.
# Start nothing else in the same device call: every time something else was started beside it
# (even another run of this script), each of its shards failed at once with "Target application
# doesn't exist or is not a valid executable". Racecheck of the whole suite takes about ten minutes
# on two GPUs, bounded by the slowest decode-graph shard.
#   tools/gpu/run_sanitized_gpu.sh [OUT_DIR]
#   env: TOOLS="memcheck racecheck"  LIMIT_S=540 (per process)  GPUS="0 1" (default: every GPU)
#        ONLY=shared|exclusive (default: both)  FILES="decode-graph hybrid" (default: every file)
set -uo pipefail
out=${1:-${OUT:-/tmp/lt-sanitize-out}}
mkdir -p "$out"
tools=${TOOLS:-memcheck racecheck}
limit=${LIMIT_S:-540}
read -r -a gpus <<< "${GPUS:-$(seq -s ' ' 0 $(($(nvidia-smi -L | wc -l) - 1)))}"
only=${ONLY:-}
jest="node node_modules/jest/bin/jest.js"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1 | tee "$out/card.txt"
compute-sanitizer --version | tail -1

# file|pattern; the patterns of one file together cover every test in it.
shards=(
  "model|linear m=1 "
  "model|linear m=64"
  "model|linear m=(7|257)|rmsNorm|argmax|GEMM backend"
  "model|topCandidates"
  "model|repetitionPenalty"
  "model|llama-tiny on CUDA"
  "model|qwen2-tiny on CUDA"
  "model|mistral-tiny on CUDA"
  "model|memory|sampled generation"
  "decode-graph|tokens=1 "
  "decode-graph|tokens=33 "
  "decode-graph|tokens=5 "
  "decode-graph|tokens=4 "
  "decode-graph|^CUDA graphs"
  "decode-graph|llama-tiny: decode steps"
  "decode-graph|llama-tiny: a greedy step"
  "decode-graph|qwen2-tiny: decode steps"
  "decode-graph|qwen2-tiny: a greedy step"
  "decode-graph|mistral-tiny: decode steps"
  "decode-graph|mistral-tiny: a greedy step"
  "session-reliability|later prompt .*\\(full caches\\)"
  "session-reliability|later prompt .*\\(a streaming layer"
  "session-reliability|later prompt .*\\(hybrid auto\\)"
  "session-reliability|later prompt .*choice pending"
  "session-reliability|first prompt .*(full caches|streaming layer)"
  "session-reliability|first prompt .*hybrid auto"
  "session-reliability|generateBatch"
  "session-reliability|as before \\(full caches\\)"
  "session-reliability|as before \\(hybrid fixed"
  "session-reliability|as before \\(hybrid auto, choice made"
  "session-reliability|as before \\(hybrid auto, choice pending"
  "session-reliability|model.dispose"
)
for file in test/gpu/*.test.ts; do
  base=$(basename "$file" .test.ts)
  printf '%s\n' "${shards[@]}" | grep -q "^$base|" || shards+=("$base|")
done

# One sanitized jest process: tool, name, test file, name pattern (may be empty), GPU.
sanitize() {
  local tool=$1 name=$2 file=$3 pattern=$4 gpu=$5 start
  start=$(date +%s)
  CUDA_VISIBLE_DEVICES=$gpu timeout "$limit" \
    compute-sanitizer --tool "$tool" --error-exitcode 9 --target-processes all \
    $jest --ci -i --testTimeout=$((limit * 1000)) ${pattern:+-t "$pattern"} "$file" > "$out/$name.log" 2>&1
  echo "$? $(($(date +%s) - start))" > "$out/$name.rc"
}

names=()
if [ "$only" != exclusive ]; then
  slot=0
  pids=()
  for tool in $tools; do
    for i in "${!shards[@]}"; do
      file=${shards[$i]%%|*}
      [ -n "${FILES:-}" ] && ! [[ " $FILES " == *" $file "* ]] && continue
      name="$tool-$file-$i"
      sanitize "$tool" "$name" "test/gpu/$file.test.ts" "${shards[$i]#*|}" "${gpus[$((slot % ${#gpus[@]}))]}" &
      pids+=($!)
      names+=("$name")
      slot=$((slot + 1))
    done
  done
  wait "${pids[@]}"
fi
if [ "$only" != shared ]; then
  for tool in $tools; do
    for file in test/gpu/exclusive/*.test.ts; do
      name="$tool-exclusive-$(basename "$file" .test.ts)"
      sanitize "$tool" "$name" "$file" "" "${gpus[0]}"
      names+=("$name")
    done
  done
fi

failed=0
printf '%-26s %-5s %-5s %-38s %s\n' "run" "exit" "secs" "tests" "sanitizer (API errors: the deliberate out-of-memory calls)"
for name in "${names[@]}"; do
  read -r rc secs < "$out/$name.rc"
  log="$out/$name.log"
  tests=$(grep -E "^Tests:" "$log" | tail -1 | sed 's/^Tests: *//')
  summary=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$log" | tail -1 | sed 's/^========= //')
  api=$(grep -c "Program hit cudaErrorMemoryAllocation" "$log")
  printf '%-26s %-5s %-5s %-38s %s (API: %s)\n' "$name" "$rc" "$secs" "${tests:-none}" "${summary:-none}" "$api"
  # memcheck counts a failed cudaMalloc as an error; the out-of-memory tests provoke exactly those,
  # so a run passes when its only errors are those API errors.
  errors=$(echo "$summary" | sed -n 's/.*SUMMARY: \([0-9]*\) error.*/\1/p; s/.*(\([0-9]*\) errors.*/\1/p' | head -1)
  other=$(grep -E "^=========  *(Invalid|Race|Error|Uninitialized|Barrier|Program hit)" "$log" | grep -vc "cudaErrorMemoryAllocation")
  if [ -z "$tests" ] || echo "$tests" | grep -q failed || [ "${other:-0}" != 0 ] || [ "${errors:-1}" -gt "$api" ]; then failed=1; fi
  [ "$rc" = 124 ] && failed=1
done
echo "tests per file, summed over shards:"
for tool in $tools; do
  for log in "$out/$tool-"*.log; do
    base=$(basename "$log" .log); base=${base#"$tool-"}; echo "${base%-[0-9]*}"
  done | sort -u | while read -r base; do
    total=$(cat "$out/$tool-$base"*.log | grep -E "^Tests:" | grep -oE "[0-9]+ passed" | awk '{s+=$1} END {print s+0}')
    echo "  $tool $base: $total passed"
  done
done
tar -czf "$out/sanitizer-logs.tgz" -C "$out" $(cd "$out" && ls *.log) && rm -f "$out"/*.log "$out"/*.rc
exit $failed
