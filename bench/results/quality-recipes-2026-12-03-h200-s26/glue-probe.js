// Run from the repository root after `npm run build`: node bench/results/quality-recipes-2026-12-03-h200-s26/glue-probe.js models/demo 512 60
// Which form of the multi-key task does a model already solve by its key? Same-count keys, needles
// where the eval put them; forms: eval ("for KEY is: N." / "... text is" + " N"), spaced ("for KEY N." /
// "for KEY" + " N"), glued ("for KEYN." / "for KEY" + "N").
const path = require("node:path");
const root = process.cwd();
const { loadModel } = require(path.join(root, "dist/lib"));
const { keyWords, makeSample } = require(path.join(root, "dist/lib/eval/tasks"));
const { brownCorpus } = require(path.join(root, "dist/lib/eval/corpus"));
async function main() {
  const [dir, contextArg = "512", seedsArg = "60"] = process.argv.slice(2);
  const model = await loadModel(dir, { device: "cpu" });
  const corpus = brownCorpus();
  const tokenCount = (w) => model.tokenizer.encode(` ${w}`, { addSpecialTokens: false }).length;
  const byCount = new Map();
  for (const w of keyWords(corpus)) byCount.set(tokenCount(w), [...(byCount.get(tokenCount(w)) ?? []), w]);
  const forms = {
    eval: { needle: (k, v) => `for ${k} is: ${v}.`, prefix: (k) => `for ${k} mentioned in the provided text is`, cont: (v) => ` ${v}` },
    spaced: { needle: (k, v) => `for ${k} ${v}.`, prefix: (k) => `for ${k}`, cont: (v) => ` ${v}` },
    glued: { needle: (k, v) => `for ${k}${v}.`, prefix: (k) => `for ${k}`, cont: (v) => `${v}` },
  };
  const tallies = Object.fromEntries(Object.keys(forms).map((f) => [f, [0, 0]]));
  for (let seed = 0; seed < Number(seedsArg); seed++) {
    const sample = makeSample(model.tokenizer, corpus, { task: "niah-multikey", context: Number(contextArg) - 24, depth: 0.5, seed }, { chat: false });
    const needles = sample.needles.map((n) => {
      const [, key, value] = /numbers for (\w+) is: (\d+)\./.exec(n.text);
      return { key, value, answering: n.answering, text: n.text };
    });
    const asked = needles.find((n) => n.answering);
    const pool = byCount.get(tokenCount(asked.key)).filter((w) => w !== asked.key);
    const keys = new Map(needles.map((n, i) => [n.key, n.answering ? n.key : pool[(seed * 7919 + i * 104729) % pool.length]]));
    if (new Set(keys.values()).size < needles.length) continue;
    for (const [name, form] of Object.entries(forms)) {
      let text = sample.text;
      for (const n of needles) text = text.replace(n.text, `One of the special magic numbers ${form.needle(keys.get(n.key), n.value)}`);
      const tail = `The special magic number for ${asked.key} mentioned in the provided text is`;
      if (!text.endsWith(tail)) throw new Error("prompt does not end with the answer prefix");
      const prompt = text.slice(0, -tail.length) + `The special magic number ${form.prefix(asked.key)}`;
      const results = await model.scoreBatch(needles.map((n) => ({ prompt, continuation: form.cont(n.value) })), { hybrid: { mode: "off" } });
      const sums = results.map((r) => r.sum);
      tallies[name][0] += needles[sums.indexOf(Math.max(...sums))].answering ? 1 : 0;
      tallies[name][1] += 1;
    }
  }
  await model.dispose();
  console.log(`${dir}, context ${contextArg}, keys of one token count, needles where the eval put them:`);
  for (const [name, [right, total]] of Object.entries(tallies)) console.log(`  ${name.padEnd(6)} ${right}/${total}`);
}
main().catch((e) => { console.error(e); process.exitCode = 1; });
