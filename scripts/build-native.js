#!/usr/bin/env node
// Builds the native addon with cmake-js. The CUDA backend is built when nvcc is found;
// LIGHTTRANSFER_CUDA=on|off|auto forces it (see CMakeLists.txt). Parallel jobs follow the
// core count, or LIGHTTRANSFER_BUILD_JOBS.
"use strict";
const { spawnSync } = require("node:child_process");
const os = require("node:os");
const path = require("node:path");

const root = path.join(__dirname, "..");
const jobs = process.env.LIGHTTRANSFER_BUILD_JOBS || String(Math.max(1, os.cpus().length));
const cuda = (process.env.LIGHTTRANSFER_CUDA || "auto").toUpperCase();
const cmakeJs = require.resolve("cmake-js/bin/cmake-js");
const args = [cmakeJs, "compile", "--parallel", jobs, `--CDLT_CUDA=${cuda}`];
if (process.env.LIGHTTRANSFER_CUDA_ARCHS) args.push(`--CDCMAKE_CUDA_ARCHITECTURES=${process.env.LIGHTTRANSFER_CUDA_ARCHS}`);
const result = spawnSync(process.execPath, args, { cwd: root, stdio: "inherit" });
if (result.status !== 0) {
  console.error(
    "\nlighttransfer: building the native addon failed. It needs CMake >= 3.18 and a C++17 compiler" +
      " (and, for the GPU backend, the CUDA toolkit's nvcc; set LIGHTTRANSFER_CUDA=off to build without it).",
  );
  process.exit(result.status ?? 1);
}
