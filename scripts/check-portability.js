#!/usr/bin/env node
// Reads the symbol versions a Linux addon needs from the system (objdump -T) and checks them
// against the floor the prebuilt binaries promise: glibc 2.31 (Debian 11, Ubuntu 20.04) and no
// GLIBCXX/CXXABI at all (libstdc++ is linked in, so the system's version does not matter).
//   node scripts/check-portability.js build/Release/lighttransfer.node

const { execFileSync } = require("node:child_process");

const floor = "2.31";

function compareVersions(a, b) {
  const x = a.split(".").map(Number);
  const y = b.split(".").map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
  return 0;
}

function highest(versions) {
  return versions.sort(compareVersions).at(-1);
}

/**
 * The highest GLIBC_/GLIBCXX_/CXXABI_ versions `file` references and the symbols it exports.
 * @example glibcFloor("build/Release/lighttransfer.node").ok // true when it loads on glibc 2.31
 */
function glibcFloor(file) {
  const table = execFileSync("objdump", ["-T", file], { encoding: "utf8", maxBuffer: 64 << 20 });
  const needed = (prefix) => [...table.matchAll(new RegExp(`\\(${prefix}_([0-9.]+)\\)`, "g"))].map((m) => m[1]);
  const glibc = highest(needed("GLIBC")) ?? "none";
  const glibcxx = highest(needed("GLIBCXX")) ?? null;
  const cxxabi = highest(needed("CXXABI")) ?? null;
  const exports = table
    .split("\n")
    .filter((line) => / g +DF \.text/.test(line) || / g +DO \.(data|bss)/.test(line))
    .map((line) => line.trim().split(/\s+/).at(-1));
  const problems = [];
  if (glibc !== "none" && compareVersions(glibc, floor) > 0) {
    const over = [
      ...new Set(
        table
          .split("\n")
          .filter((l) => {
            const m = /\(GLIBC_([0-9.]+)\)\s+(\S+)/.exec(l);
            return m && compareVersions(m[1], floor) > 0;
          })
          .map((l) => l.trim().split(/\s+/).at(-1)),
      ),
    ];
    problems.push(`GLIBC_${glibc} (above ${floor}: ${over.slice(0, 8).join(", ")}${over.length > 8 ? ", ..." : ""})`);
  }
  if (glibcxx) problems.push(`GLIBCXX_${glibcxx} (libstdc++ is not linked in)`);
  if (cxxabi) problems.push(`CXXABI_${cxxabi} (libstdc++ is not linked in)`);
  return { file, glibc, glibcxx, cxxabi, exports, ok: problems.length === 0, problems };
}

module.exports = { glibcFloor };

if (require.main === module) {
  const files = process.argv.slice(2);
  if (!files.length) {
    console.error("usage: node scripts/check-portability.js <addon.node>...");
    process.exit(2);
  }
  let ok = true;
  for (const file of files) {
    const r = glibcFloor(file);
    console.log(`${file}: GLIBC_${r.glibc}, GLIBCXX ${r.glibcxx ?? "none"}, CXXABI ${r.cxxabi ?? "none"}; exports ${r.exports.join(" ")}`);
    for (const p of r.problems) console.log(`  above the floor: ${p}`);
    ok &&= r.ok;
  }
  process.exit(ok ? 0 : 1);
}
