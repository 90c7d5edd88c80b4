#!/usr/bin/env bash
# On a GPU machine: builds of the addon timed against each other on the model's decode step, in
# turns within one job (the step's time drifts by a few percent from job to job, so only builds
# timed side by side compare). Each round runs the builds in the order given and then in reverse
# (A B B A for two), each run a process of its own with LIGHTTRANSFER_ADDON set; then the median
# graph ms per build and point, and each build's ratio to the first.
#   tools/gpu/ab_model_decode.sh MODEL_DIR OUT_DIR NAME=ADDON_PATH[,DIST_DIR][,VAR=VALUE...] NAME=... [...]
#   (ROUNDS default 2, BATCHES default 1, CONTEXTS default 4096,16384)
# A build whose TypeScript differs too names its own compiled dist/ (inside the repository, so that
# it finds node_modules); the others run dist/. VAR=VALUE pairs are set in that build's
# environment (one addon timed under two settings is two builds).
# Run from the repository root; expects node on PATH, node_modules unpacked and dist/ built. A
# run whose model check failed, or that did not finish, fails the script after the summary.
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 MODEL_DIR OUT_DIR NAME=ADDON_PATH[,DIST_DIR][,VAR=VALUE...] NAME=... [...]" >&2
  exit 2
fi
model=$1
out=$2
shift 2
builds=("$@")
# Sets name, addon, dist and settings from one build's NAME=ADDON_PATH[,DIST_DIR][,VAR=VALUE...];
# fails on anything else.
parse_build() {
  local part
  name=${1%%=*}
  IFS=, read -r -a parts <<< "${1#*=}"
  addon=${parts[0]:-}
  dist=dist
  settings=()
  [[ $1 == ?*=?* && -n $addon ]] || return 1
  for part in "${parts[@]:1}"; do
    if [[ $part == ?*=* ]]; then
      settings+=("$part")
    elif [[ -n $part && $dist == dist ]]; then
      dist=$part
    else
      return 1
    fi
  done
}
for build in "${builds[@]}"; do
  if ! parse_build "$build"; then
    echo "$build: give each build as NAME=ADDON_PATH[,DIST_DIR][,VAR=VALUE...]" >&2
    exit 2
  fi
done
reversed=()
for ((i = ${#builds[@]} - 1; i >= 0; i--)); do reversed+=("${builds[i]}"); done
mkdir -p "$out"
rm -f "$out"/ab-*.json "$out"/ab-*.txt  # the summary reads every run in the folder
failed=0
for ((round = 1; round <= ${ROUNDS:-2}; round++)); do
  run=0
  for build in "${builds[@]}" "${reversed[@]}"; do
    run=$((run + 1))
    parse_build "$build"
    if env "${settings[@]}" LIGHTTRANSFER_ADDON="$addon" node "$dist/bench/model-decode.js" "$model" --batches "${BATCHES:-1}" \
      --contexts "${CONTEXTS:-4096,16384}" --out "$out/ab-$round-$run-$name.json" > "$out/ab-$round-$run-$name.txt" 2>&1; then
      echo "round $round, run $run: $name"
    else
      echo "round $round, run $run: $name FAILED (its output: $out/ab-$round-$run-$name.txt)"
      failed=1
    fi
  done
done
python3 tools/gpu/summarize_ab_decode.py "$out" "${builds[@]%%=*}" 2>&1 | tee "$out/ab.txt"
exit $failed
