#!/usr/bin/env bash
# On a GPU machine without npm or network: install the packed release packages by hand, the way
# npm lays them out, into a fresh folder, then run the whole GPU test suite against that install,
# so that the addon under test is the platform package's prebuilt binary (no build/ anywhere).
#
#   tools/gpu/run_installed_gpu.sh [PACKAGES_DIR] [OUT_DIR]
#
# Run from the repository root. Expects:
#   PACKAGES_DIR (default dist/packages): what `npm run release` wrote: release.json, the main
#     package lighttransfer-<v>.tgz and the platform package lighttransfer-linux-x64-gnu-<v>.tgz;
#   DEPS_TARBALL: a .tar.xz of a node_modules/ folder with the runtime dependencies and
#     jest/ts-jest (the machine has no npm or network to fetch them);
#   node on PATH.
# The test sources (test/) come from this checkout; their imports of ../../lib are served by the
# installed package's dist/lib, and every test file checks which addon file was loaded.
set -euo pipefail
repo=$(pwd)
packages=$(cd "${1:-dist/packages}" && pwd)
out=${2:-${OUT:-/tmp/lt-installed-out}}
mkdir -p "$out"
: "${DEPS_TARBALL:?set DEPS_TARBALL to a .tar.xz of node_modules/ (runtime dependencies and jest/ts-jest)}"
unset LIGHTTRANSFER_ADDON

app=$(mktemp -d /tmp/lt-installed.XXXXXX)
echo "installing into $app"
tar -xJf "$DEPS_TARBALL" -C "$app"

# The tarballs hold a package/ folder; npm puts each at node_modules/<name>.
unpack() {  # tgz name
  local dir="$app/node_modules/$2"
  rm -rf "$dir" && mkdir -p "$dir"
  tar -xzf "$1" -C "$dir" --strip-components=1
}
read -r main_file platform_file platform_name < <(node -e '
  const r = require(process.argv[1]);
  const [main, platform] = r.packages;
  console.log(main.file, platform.file, platform.name);' "$packages/release.json")
unpack "$packages/$main_file" lighttransfer
unpack "$packages/$platform_file" "$platform_name"

# What npm checks and runs: the platform package fits this machine, the dependencies are there,
# and the main package's install script (which must find the prebuilt and build nothing).
(cd "$app" && node -e '
  const fs = require("fs");
  const platform = JSON.parse(fs.readFileSync(`node_modules/${process.argv[1]}/package.json`, "utf8"));
  const main = JSON.parse(fs.readFileSync("node_modules/lighttransfer/package.json", "utf8"));
  if (!platform.os.includes(process.platform) || !platform.cpu.includes(process.arch)) throw new Error(`${platform.name} does not fit ${process.platform}-${process.arch}`);
  if (main.optionalDependencies[platform.name] !== platform.version) throw new Error(`lighttransfer wants ${platform.name}@${main.optionalDependencies[platform.name]}, the tarball is ${platform.version}`);
  const missing = Object.keys(main.dependencies).filter((d) => !fs.existsSync(`node_modules/${d}/package.json`));
  console.log(`lighttransfer ${main.version} + ${platform.name} ${platform.version}; dependencies not in the carried node_modules: ${missing.join(", ") || "none"}`);
' "$platform_name")
(cd "$app/node_modules/lighttransfer" && node scripts/install.js) 2>&1 | tee "$out/install.log"
grep -q "using the prebuilt binary" "$out/install.log"
if [ -e "$app/node_modules/lighttransfer/build" ]; then echo "a build/ folder appeared: the prebuilt was not used" >&2; exit 1; fi

# The test tree, with lib/ pointing at the installed JavaScript.
cp -r "$repo/test" "$app/test"
ln -s node_modules/lighttransfer/dist/lib "$app/lib"
cp "$repo/jest.config.js" "$app/jest.repo.config.js"
cat > "$app/installed-addon-check.js" <<EOF
// Runs before each test file, in its module registry: loads the addon the way the library does
// and fails the file unless it is the installed platform package's binary.
const fs = require("fs");
const native = require("./lib/runtime/native");
native.addon();
const expected = require("path").join(__dirname, "node_modules", "$platform_name", "lighttransfer.node");
if (fs.realpathSync(native.addonPath()) !== fs.realpathSync(expected))
  throw new Error("the addon came from " + native.addonPath() + ", not from " + expected);
EOF
cat > "$app/jest.config.js" <<'EOF'
const base = require("./jest.repo.config.js");
module.exports = {
  ...base,
  projects: base.projects.map((p) => ({ ...p, rootDir: __dirname, setupFilesAfterEnv: [...(p.setupFilesAfterEnv ?? []), "<rootDir>/installed-addon-check.js"] })),
};
EOF

cd "$app"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/card.txt"
node -e '
  const lt = require("lighttransfer");
  const cuda = lt.cudaStatus();
  console.log("addon loaded from", lt.addonPath());
  console.log(JSON.stringify(cuda), JSON.stringify(lt.devices()[1] ?? null));
  if (!cuda.available) process.exit(1);' | tee "$out/addon.txt"
ls -la "node_modules/$platform_name/lighttransfer.node" | tee -a "$out/addon.txt"
status=0 smoke=0   # with pipefail, a pipeline's status is jest's (or the smoke script's)
# The card-filling tests run after the others, alone (as `npm run test:gpu` does).
# JEST_ARGS (e.g. a test file's path) narrows both runs.
node node_modules/jest/bin/jest.js --selectProjects gpu --ci ${JEST_ARGS:-} 2>&1 | tee "$out/gpu-tests.log" || status=$?
node node_modules/jest/bin/jest.js --selectProjects gpu-exclusive --ci --passWithNoTests ${JEST_ARGS:-} 2>&1 | tee -a "$out/gpu-tests.log" || status=$?
for device in cuda:0 cpu; do
  node test/install/smoke.js test/fixtures/models/llama-tiny "$platform_name/lighttransfer.node" $device 2>&1 | tee -a "$out/smoke.log" || smoke=$?
done
echo "installed prebuilt: gpu tests exit $status, smoke exit $smoke ($app)"
[ "$status" = 0 ] && [ "$smoke" = 0 ]
