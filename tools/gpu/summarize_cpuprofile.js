// Self time per function of a V8 .cpuprofile (node --cpu-prof), largest first, with the share of
// the whole profile: `node tools/gpu/summarize_cpuprofile.js FILE.cpuprofile [TOP]`.
const fs = require("node:fs");

const [file, top = "25"] = process.argv.slice(2);
if (!file) throw new Error("usage: node tools/gpu/summarize_cpuprofile.js FILE.cpuprofile [TOP]");
const profile = JSON.parse(fs.readFileSync(file, "utf8"));
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const selfUs = new Map();
// timeDeltas[i] is the time between sample i-1 and sample i; it is charged to sample i's node.
profile.samples.forEach((id, i) => {
  const node = byId.get(id);
  const f = node.callFrame;
  const name = `${f.functionName || "(anonymous)"} ${f.url ? `${f.url.split("/").slice(-2).join("/")}:${f.lineNumber + 1}` : ""}`.trim();
  selfUs.set(name, (selfUs.get(name) ?? 0) + (profile.timeDeltas[i] ?? 0));
});
const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
console.log(`profile: ${(total / 1e6).toFixed(2)} s sampled`);
for (const [name, us] of [...selfUs].sort((a, b) => b[1] - a[1]).slice(0, Number(top)))
  console.log(`${(us / 1e3).toFixed(1).padStart(10)} ms ${((100 * us) / total).toFixed(1).padStart(5)}%  ${name}`);
