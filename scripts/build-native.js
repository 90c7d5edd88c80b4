#!/usr/bin/env node
// Builds the native addon with cmake-js. The CUDA backend is built when nvcc is found;
// LIGHTTRANSFER_CUDA=on|off|auto forces it (see CMakeLists.txt). Parallel jobs follow the
// core count, or LIGHTTRANSFER_BUILD_JOBS.

const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const root = path.join(__dirname, "..");
const jobs = process.env.LIGHTTRANSFER_BUILD_JOBS || String(Math.max(1, os.cpus().length));
const cuda = (process.env.LIGHTTRANSFER_CUDA || "auto").toUpperCase();
const cmakeJs = require.resolve("cmake-js/bin/cmake-js");
const defines = [`--CDLT_CUDA=${cuda}`];
if (process.env.LIGHTTRANSFER_CUDA_ARCHS) defines.push(`--CDCMAKE_CUDA_ARCHITECTURES=${process.env.LIGHTTRANSFER_CUDA_ARCHS}`);
// LIGHTTRANSFER_SANITIZE=on builds the ASan + UBSan addon into build-sanitize/ (see
// scripts/sanitize.sh), leaving the regular build/ alone; LIGHTTRANSFER_STEP_TIMELINE=on the
// diagnostic step-timeline addon into build-timeline/ (native/cuda/step_timeline.cuh).
const sanitize = /^(on|1|true)$/i.test(process.env.LIGHTTRANSFER_SANITIZE || "");
if (sanitize) defines.push("--CDLT_SANITIZE=ON", "--out", path.join(root, "build-sanitize"));
const timeline = /^(on|1|true)$/i.test(process.env.LIGHTTRANSFER_STEP_TIMELINE || "");
if (timeline && sanitize) {
  console.error("lighttransfer: LIGHTTRANSFER_SANITIZE and LIGHTTRANSFER_STEP_TIMELINE build different addons; set one");
  process.exit(1);
}
if (timeline) defines.push("--CDLT_STEP_TIMELINE=ON", "--out", path.join(root, "build-timeline"));
// CMake keeps the CUDA compiler a build folder was first configured with: when the environment
// now names another (CUDACXX, $CUDA_HOME/bin/nvcc, $CUDA_PATH/bin/nvcc), the folder starts afresh.
const buildDir = sanitize ? path.join(root, "build-sanitize") : timeline ? path.join(root, "build-timeline") : path.join(root, "build");
/** A command as CMake takes it: its first word, found on the PATH unless it is a path. */
function program(command) {
  const name = command.trim().split(/\s+/)[0];
  if (name.includes(path.sep)) return path.resolve(name);
  for (const dir of (process.env.PATH || "").split(path.delimiter)) {
    const file = path.join(dir, name);
    if (dir && fs.existsSync(file)) return file;
  }
  return name;
}
function namedNvcc() {
  if (process.env.CUDACXX) return program(process.env.CUDACXX);
  for (const name of ["CUDA_HOME", "CUDA_PATH"]) {
    const nvcc = process.env[name] && path.join(process.env[name], "bin", "nvcc");
    if (nvcc && fs.existsSync(nvcc)) return nvcc;
  }
  return undefined;
}
const wanted = cuda === "OFF" ? undefined : namedNvcc();
const cacheFile = path.join(buildDir, "CMakeCache.txt");
if (wanted && fs.existsSync(cacheFile)) {
  const cached = /^(?:LT_NVCC|CMAKE_CUDA_COMPILER):[A-Z]+=(.*)$/m.exec(fs.readFileSync(cacheFile, "utf8"))?.[1];
  const real = (file) => (fs.existsSync(file) ? fs.realpathSync(file) : file);
  if (cached && real(cached) !== real(wanted)) {
    console.error(`lighttransfer: the CUDA compiler is now ${wanted} (was ${cached}): building ${buildDir} afresh`);
    fs.rmSync(buildDir, { recursive: true, force: true });
  }
}
// Configure every time so a changed LIGHTTRANSFER_CUDA reaches CMake's cache; building is incremental.
const run = (command, extra) =>
  spawnSync(process.execPath, [cmakeJs, command, ...extra, ...defines], { cwd: root, stdio: "inherit" }).status === 0;
if (!(run("configure", []) && run("build", ["--parallel", jobs]))) {
  console.error(
    "\nlighttransfer: building the native addon failed. It needs CMake >= 3.18 and a C++17 compiler" +
      " (and, for the GPU backend, the CUDA toolkit's nvcc; set LIGHTTRANSFER_CUDA=off to build without it).",
  );
  process.exit(1);
}
