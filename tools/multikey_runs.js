// Does a model find the multi-key answer by its key, or by where its needle stands? Multi-key
// samples of `lighttransfer eval` (lib/eval makeSample, seeds 0..SEEDS-1) are rewritten so that
// the four keys have one token count (a key's length cannot tell it apart) and the needles stand
// in one of three ways:
//   first  all four in one run at the first needle's place, the asked one first
//   last   the same run with the asked one last
//   apart  where the sample put them, kept only when no two share a sentence boundary
// Each needle's number is scored as the continuation (teacher-forced, full attention), and the
// model's pick is the number it gives the highest log-likelihood. A model that matches keys picks
// the asked needle in all three; one that learnt "the first needle of a run" is right in `first`,
// wrong in `last` and at a pick among four (25%) in `apart`.
//   node tools/multikey_runs.js MODEL_DIR [CONTEXT=256] [SEEDS=60] [DEVICE=cpu]
// Run from the repository root after `npm run build` (it loads dist/lib).
const { loadModel } = require("../dist/lib");
const { keyWords, makeSample } = require("../dist/lib/eval/tasks");
const { brownCorpus } = require("../dist/lib/eval/corpus");

async function main() {
  const [dir, contextArg = "256", seedsArg = "60", device = "cpu"] = process.argv.slice(2);
  if (!dir) throw new Error("usage: node tools/multikey_runs.js MODEL_DIR [CONTEXT] [SEEDS] [DEVICE]");
  const model = await loadModel(dir, { device });
  const corpus = brownCorpus();
  const context = Number(contextArg);
  const tokenCount = (word) => model.tokenizer.encode(` ${word}`, { addSpecialTokens: false }).length;
  const byCount = new Map();
  for (const word of keyWords(corpus)) {
    const n = tokenCount(word);
    byCount.set(n, [...(byCount.get(n) ?? []), word]);
  }
  const tallies = { first: [0, 0], last: [0, 0], apart: [0, 0] };
  let skipped = 0; // seeds whose drawn keys repeat one another
  try {
    for (let seed = 0; seed < Number(seedsArg); seed++) {
      // A shorter prompt than `context`: same-count keys may be longer than the sample's own, and
      // the number scored after the prompt takes 8 tokens.
      const sample = makeSample(
        model.tokenizer,
        corpus,
        { task: "niah-multikey", context: context - 24, depth: 0.5, seed },
        { chat: false },
      );
      const needles = sample.needles.map((n) => {
        const [, key, value] = /numbers for (\w+) is: (\d+)\./.exec(n.text);
        return { key, value, answering: n.answering, depthReached: n.depthReached, text: n.text };
      });
      // Four keys of the asked key's token count, chosen by the seed (the asked one stays).
      const asked = needles.find((n) => n.answering);
      const pool = byCount.get(tokenCount(asked.key)).filter((w) => w !== asked.key);
      const keys = new Map(needles.map((n, i) => [n.key, n.answering ? n.key : pool[(seed * 7919 + i * 104729) % pool.length]]));
      if (new Set(keys.values()).size < needles.length) {
        skipped++;
        continue;
      }
      let text = sample.text;
      for (const n of needles) text = text.replace(` ${n.text}`, "");
      const haystackAt = sample.text.indexOf(` ${needles[0].text}`);
      const rewritten = (n) => n.text.replace(`for ${n.key} is:`, `for ${keys.get(n.key)} is:`);
      const others = needles.filter((n) => !n.answering);
      const run = (order) => text.slice(0, haystackAt) + order.map((n) => ` ${rewritten(n)}`).join("") + text.slice(haystackAt);
      const layouts = {
        first: () => run([asked, ...others]),
        last: () => run([...others, asked]),
        apart: () =>
          new Set(needles.map((n) => n.depthReached)).size === needles.length
            ? needles.reduce((t, n) => t.replace(` ${n.text}`, ` ${rewritten(n)}`), sample.text)
            : undefined,
      };
      for (const [layout, make] of Object.entries(layouts)) {
        const prompt = make();
        if (prompt === undefined) continue;
        const results = await model.scoreBatch(
          needles.map((n) => ({ prompt, continuation: ` ${n.value}` })),
          {
            hybrid: { mode: "off" },
          },
        );
        const sums = results.map((r) => r.sum);
        tallies[layout][0] += needles[sums.indexOf(Math.max(...sums))].answering ? 1 : 0;
        tallies[layout][1] += 1;
      }
    }
  } finally {
    await model.dispose();
  }
  console.log(
    `context ${context}, keys of one token count: the asked needle's number scored highest (${skipped} seeds skipped: a key drawn twice)`,
  );
  for (const [layout, [right, total]] of Object.entries(tallies)) console.log(`  ${layout.padEnd(5)} ${right}/${total}`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
