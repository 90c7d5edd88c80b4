#!/usr/bin/env bash
# Here, after building the addon: packs build/Release/lighttransfer.node, stripped and
# xz-compressed (~4 MB, from ~40 MB), for a GPU job that compares builds; unpack it there with
# tools/gpu/job_setup.sh (NAME=OUT.xz), or with `xz -dc OUT.xz > NAME.node`.
#   tools/gpu/pack_addon.sh OUT.xz [ADDON]      (ADDON default build/Release/lighttransfer.node)
set -euo pipefail
out=${1:?usage: tools/gpu/pack_addon.sh OUT.xz [ADDON]}
addon=${2:-build/Release/lighttransfer.node}
[ -f "$addon" ] || { echo "$addon not found: build the addon first (npm run build:native)" >&2; exit 1; }
stripped=$(mktemp)
trap 'rm -f "$stripped"' EXIT
strip -o "$stripped" "$addon"
xz -T0 -9 -c "$stripped" > "$out"
echo "$out: $(du -h "$out" | cut -f1) (from $(du -h "$addon" | cut -f1))"
