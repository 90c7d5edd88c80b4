#!/usr/bin/env node
// `npm install` step of lighttransfer. Uses the prebuilt addon of this platform's package when
// it is installed and loads; otherwise builds from source and says why: with CMake (cmake-js;
// adds the CUDA backend when nvcc is found), or, without CMake, with node-gyp (CPU backend).
// A build from source is forced by LIGHTTRANSFER_BUILD_FROM_SOURCE=1 (or npm's
// --build-from-source), and is always what happens in a checkout of the repository. Where no
// prebuilt fits, a CMake build that fails is tried again without the CUDA backend, then with
// node-gyp; a build asked for, or made in a checkout, fails the install instead (a user who asked
// for a CUDA build must not get a CPU one, and CI must see a .cu file that does not compile).
// Using the prebuilt removes an earlier source build, which the loader would take first.

const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

const root = path.join(__dirname, "..");
const log = (line) => console.error(`lighttransfer: ${line}`);

function wantsSourceBuild() {
  const flag = (value) => value !== undefined && value !== "" && value !== "false" && value !== "0";
  return flag(process.env.npm_config_build_from_source) || flag(process.env.LIGHTTRANSFER_BUILD_FROM_SOURCE);
}

/** Why the prebuilt addon cannot be used here, or null when it loads. */
function prebuiltProblem() {
  const { platformPackageName, prebuiltAddonPath } = require(path.join(root, "dist", "lib", "runtime", "native.js"));
  const name = platformPackageName();
  const file = prebuiltAddonPath(name);
  if (!fs.existsSync(file)) {
    return (
      `no prebuilt binary for ${process.platform}-${process.arch} is installed (${name}: not found; ` +
      "prebuilt binaries exist for Linux x64 with glibc >= 2.31, and npm skips them when optional dependencies are omitted)"
    );
  }
  // The loader's own message (a missing GLIBC_2.xx, say), not the first line of Node's stack.
  const script = `try { require(${JSON.stringify(file)}); } catch (err) { console.error(err.message); process.exit(1); }`;
  const probe = spawnSync(process.execPath, ["-e", script], { encoding: "utf8" });
  if (probe.status !== 0) return `the prebuilt binary ${file} does not load here (${probe.stderr.trim().split("\n")[0]})`;
  log(`using the prebuilt binary ${file}`);
  return null;
}

function has(command, args) {
  return spawnSync(command, args, { stdio: "ignore" }).status === 0;
}

function buildWithCmake(env = process.env) {
  return spawnSync(process.execPath, [path.join(__dirname, "build-native.js")], { cwd: root, stdio: "inherit", env }).status === 0;
}

/** node-gyp ships with npm, which names it in npm_config_node_gyp when it runs this script. */
function buildWithNodeGyp() {
  const bundled = path.join(
    path.dirname(process.execPath),
    "..",
    "lib",
    "node_modules",
    "npm",
    "node_modules",
    "node-gyp",
    "bin",
    "node-gyp.js",
  );
  const nodeGyp = process.env.npm_config_node_gyp || bundled;
  if (!fs.existsSync(nodeGyp)) {
    log(`node-gyp was not found (looked at ${nodeGyp}); run this through npm, or install CMake`);
    return false;
  }
  return spawnSync(process.execPath, [nodeGyp, "rebuild", "--jobs", "max"], { cwd: root, stdio: "inherit" }).status === 0;
}

function buildFromSource(fallBack) {
  const cuda = (process.env.LIGHTTRANSFER_CUDA || "auto").toLowerCase();
  if (has("cmake", ["--version"])) {
    if (buildWithCmake()) return;
    if (fallBack && cuda !== "on" && cuda !== "off") {
      log("the CMake build failed; trying again without the CUDA backend (LIGHTTRANSFER_CUDA=off)");
      if (buildWithCmake({ ...process.env, LIGHTTRANSFER_CUDA: "off" })) return;
    }
    if (fallBack && cuda !== "on") {
      log("the CMake build failed; building the CPU backend with node-gyp");
      if (buildWithNodeGyp()) return;
    }
  } else if (cuda === "on") {
    log("LIGHTTRANSFER_CUDA=on, but CMake was not found: the CUDA backend is built with CMake >= 3.18; install it and run again");
    process.exit(1);
  } else {
    log(
      "CMake was not found: building the CPU backend with node-gyp (for the CUDA backend, install CMake >= 3.18 " +
        "and the CUDA toolkit, then run `LIGHTTRANSFER_BUILD_FROM_SOURCE=1 npm rebuild lighttransfer`)",
    );
    if (buildWithNodeGyp()) return;
  }
  log(
    "building from source failed. It needs a C++17 compiler and either CMake >= 3.18 (cmake-js; the CUDA backend " +
      "is added when nvcc is found) or Python 3 and make for node-gyp (CPU backend). See the Installation section of " +
      "lighttransfer's README.",
  );
  process.exit(1);
}

const checkout = fs.existsSync(path.join(root, "lib", "index.ts"));
if (checkout) buildFromSource(false);
else if (wantsSourceBuild()) {
  log("building from source, as asked (LIGHTTRANSFER_BUILD_FROM_SOURCE or --build-from-source)");
  buildFromSource(false);
} else {
  const problem = prebuiltProblem();
  if (problem) {
    log(`${problem}; building from source instead`);
    buildFromSource(true);
  } else {
    fs.rmSync(path.join(root, "build"), { recursive: true, force: true });
  }
}
