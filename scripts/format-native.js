#!/usr/bin/env node
// clang-format over native/ (.clang-format at the root): `--check` fails on any file that is not
// formatted (CI), without it the files are rewritten in place.
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

const root = path.join(__dirname, "..");
const files = fs
  .readdirSync(path.join(root, "native"), { recursive: true, encoding: "utf8" })
  .filter((f) => /\.(h|cpp|cu|cuh)$/.test(f))
  .map((f) => path.join("native", f))
  .sort();
const clangFormat = require.resolve("clang-format/index.js");
const mode = process.argv.includes("--check") ? ["--dry-run", "--Werror"] : ["-i"];
try {
  execFileSync(process.execPath, [clangFormat, ...mode, ...files], { cwd: root, stdio: "inherit" });
} catch {
  console.error("native/ is not clang-formatted: run `npm run format`");
  process.exit(1);
}
console.log(`clang-format: ${files.length} files ${mode[0] === "-i" ? "formatted" : "checked"}`);
