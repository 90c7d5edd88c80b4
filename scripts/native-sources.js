#!/usr/bin/env node
// Prints the addon's C++ sources from native/sources.txt, one per line (for binding.gyp's
// `<!@(...)` expansion, which runs in the repository root). The patterns are `folder/*.ext`,
// the same ones CMakeLists.txt hands to file(GLOB).

const fs = require("node:fs");
const path = require("node:path");

const root = path.join(__dirname, "..");

/** The source files named by native/sources.txt, relative to the repository root, sorted. */
function nativeSources() {
  const patterns = fs
    .readFileSync(path.join(root, "native", "sources.txt"), "utf8")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith("#"));
  const files = [];
  for (const pattern of patterns) {
    const match = /^(.+)\/\*(\.[A-Za-z0-9]+)$/.exec(pattern);
    if (!match) throw new Error(`native/sources.txt: '${pattern}' is not of the form folder/*.ext`);
    const [, folder, extension] = match;
    for (const name of fs.readdirSync(path.join(root, folder)).sort()) if (name.endsWith(extension)) files.push(`${folder}/${name}`);
  }
  return files;
}

module.exports = { nativeSources };
if (require.main === module) console.log(nativeSources().join("\n"));
