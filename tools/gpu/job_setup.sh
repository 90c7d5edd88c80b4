# On a GPU machine without npm or network: the start every A/B or test job of this repository
# shares, in one place. Source it from the repository root, with node on PATH:
#   source tools/gpu/job_setup.sh DEPS.tar.xz OUT_DIR [NAME=ADDON.xz ...]
# It unpacks DEPS (made here by `tools/gpu/pack_deps.sh tests`) into the repository, writes each
# addon (made here by `tools/gpu/pack_addon.sh`) to $ADDONS/NAME.node (ADDONS default
# /tmp/lt-addons), and the card to OUT_DIR/card.txt. Then the job has:
#   stamp MESSAGE      prints MESSAGE after the seconds since the setup;
#   checkpoint8b DIR   makes the Llama-3-8B-shape checkpoint and transformers' reference logits
#                      in DIR (tools/make_llama8b.py) unless DIR holds one; its log goes to
#                      OUT_DIR/make8b.txt.
# Each build is then LIGHTTRANSFER_ADDON=$ADDONS/NAME.node, e.g. for tools/gpu/ab_model_decode.sh.
if [ $# -lt 2 ]; then
  echo "usage: source tools/gpu/job_setup.sh DEPS.tar.xz OUT_DIR [NAME=ADDON.xz ...]" >&2
  return 2 2>/dev/null || exit 2
fi
job_setup_start=$(date +%s)
job_out=$2
ADDONS=${ADDONS:-/tmp/lt-addons}
mkdir -p "$job_out" "$ADDONS"
tar -xJf "$1"
for job_addon in "${@:3}"; do
  if [[ $job_addon != ?*=?* ]]; then
    echo "$job_addon: give each addon as NAME=ADDON.xz" >&2
    return 2 2>/dev/null || exit 2
  fi
  xz -dc "${job_addon#*=}" > "$ADDONS/${job_addon%%=*}.node"
done
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$job_out/card.txt"
else
  echo "no nvidia-smi on this machine" | tee "$job_out/card.txt"
fi

stamp() { echo "[$(($(date +%s) - job_setup_start)) s] $*"; }

checkpoint8b() {
  if [ -f "$1/config.json" ]; then
    echo "checkpoint8b: $1 holds a checkpoint already"
    return 0
  fi
  python3 tools/make_llama8b.py "$1" > "$job_out/make8b.txt" 2>&1
  local rc=$?
  echo "make8b rc $rc" | tee -a "$job_out/make8b.txt"
  return $rc
}
