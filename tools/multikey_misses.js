// Where a model goes wrong on multi-key needle-in-a-haystack: the samples of `lighttransfer eval`
// (lib/eval makeSample, the eval's default depths and seeds 0..SEEDS-1) answered greedily and
// judged by the eval's own rule (isCorrect), and for each miss whose number it gave (another key's, or none) and where the asked and the
// chosen needles stand among the four in the text, with each key's tokens; then the right answers by
// the asked needle's place in the text, by the number of tokens of its key, and by how many of the
// other needles have keys of that many tokens (a model that tells keys apart by their length alone
// is right when none has, and picks among the equal ones when some have).
// With --blank-key the question and the answer prefix name no key: the asked key's tokens there
// ("for KEY mentioned") are replaced by as many tokens of " the", so what is still right was found
// without reading the key.
//   node tools/multikey_misses.js MODEL_DIR [CONTEXT=1024] [SEEDS=16] [DEVICE=cpu] [--blank-key]
// Run from the repository root after `npm run build` (it loads dist/lib).
const { answerSample, loadModel } = require("../dist/lib");
const { isCorrect, makeSample } = require("../dist/lib/eval/tasks");
const { brownCorpus } = require("../dist/lib/eval/corpus");
const { defaultEvalSettings } = require("../dist/lib/eval/config");

async function main() {
  const args = process.argv.slice(2);
  const blankKey = args.includes("--blank-key");
  const [dir, contextArg = "1024", seedsArg = "16", device = "cpu"] = args.filter((a) => a !== "--blank-key");
  if (!dir) throw new Error("usage: node tools/multikey_misses.js MODEL_DIR [CONTEXT] [SEEDS] [DEVICE] [--blank-key]");
  const model = await loadModel(dir, { device });
  const corpus = brownCorpus();
  const context = Number(contextArg);
  const byOrder = new Map();
  const byKeyTokens = new Map();
  const bySharedTokenCount = new Map();
  const encode = (text) => model.tokenizer.encode(text, { addSpecialTokens: false });
  const blank = { ids: encode(" the"), before: encode(" for"), after: encode(" mentioned") };
  if (blankKey && blank.ids.length !== 1) throw new Error('--blank-key needs " the" to be one token of this tokenizer');
  // as the eval makes and answers samples (chat "auto": the template where the model has one)
  const chat = model.tokenizer.hasChatTemplate;
  const sampleOptions = { chat, maxPositions: model.config.maxPositionEmbeddings, extraTokens: defaultEvalSettings.extraTokens };
  try {
    for (let seed = 0; seed < Number(seedsArg); seed++)
      for (const depth of defaultEvalSettings.depths) {
        const sample = makeSample(model.tokenizer, corpus, { task: "niah-multikey", context, depth, seed }, sampleOptions);
        const needles = sample.needles.map((n) => {
          const [, key, value] = /numbers for (\w+) is: (\d+)/.exec(n.text);
          const ids = encode(` ${key}`);
          return { key, value, answering: n.answering, ids, pieces: ids.map((id) => model.tokenizer.decode([id])) };
        });
        const asked = needles.findIndex((n) => n.answering);
        const askedKey = needles[asked];
        const prompt = blankKey
          ? withoutAskedKey(sample.prompt, askedKey.ids, blank, `seed ${seed} depth ${depth} key "${askedKey.key}"`)
          : sample.prompt;
        const out = await answerSample(
          model,
          { prompt, answerIds: sample.answerIds },
          { hybrid: { mode: "off" }, extraTokens: defaultEvalSettings.extraTokens },
        );
        const given = out.text.trim().slice(0, sample.answer.length);
        const chosen = needles.findIndex((n) => n.value === given);
        const correct = isCorrect(out.text, sample.answer);
        count(byOrder, asked, correct);
        count(byKeyTokens, askedKey.ids.length, correct);
        count(bySharedTokenCount, needles.filter((n) => n !== askedKey && n.ids.length === askedKey.ids.length).length, correct);
        if (!correct)
          console.log(
            `seed ${seed} depth ${depth}: asked needle ${asked + 1} of ${needles.length}, gave ${chosen >= 0 ? `needle ${chosen + 1}'s number` : `"${given}"`}; keys ` +
              needles.map((n, i) => `${i + 1}:${n.key}[${n.pieces.join("|")}]${n.answering ? "*" : ""}`).join(" "),
          );
      }
  } finally {
    await model.dispose();
  }
  const tallies = [...byOrder].sort((a, b) => a[0] - b[0]);
  const sum = (key) => tallies.reduce((n, [, t]) => n + t[key], 0);
  console.log(`context ${context}: ${sum("right")}/${sum("total")} right`);
  for (const [asked, t] of tallies) console.log(`  asked needle ${asked + 1}: ${t.right}/${t.total}`);
  for (const [tokens, t] of [...byKeyTokens].sort((a, b) => a[0] - b[0]))
    console.log(`  asked key of ${tokens} tokens: ${t.right}/${t.total}`);
  for (const [shared, t] of [...bySharedTokenCount].sort((a, b) => a[0] - b[0]))
    console.log(`  ${shared} other keys of the asked key's token count: ${t.right}/${t.total}`);
}

/**
 * `prompt` with the asked key blanked where the question and the answer prefix name it ("for KEY
 * mentioned"): its tokens replaced by as many `blank.ids` tokens. The needles ("for KEY is:") keep
 * theirs, and so do words of the prompt's own text that happen to contain the key's tokens.
 */
function withoutAskedKey(prompt, key, blank, where) {
  const ids = Array.from(prompt);
  const run = [...blank.before, ...key, ...blank.after];
  let found = 0;
  for (let at = 0; at + run.length <= ids.length; at++)
    if (run.every((id, j) => ids[at + j] === id)) {
      ids.fill(blank.ids[0], at + blank.before.length, at + blank.before.length + key.length);
      found++;
    }
  if (found !== 2)
    throw new Error(`${where}: the question and the answer prefix should name the key as "for KEY mentioned" twice; found ${found}`);
  return ids;
}

function count(tallies, key, correct) {
  const tally = tallies.get(key) ?? { right: 0, total: 0 };
  tallies.set(key, { right: tally.right + (correct ? 1 : 0), total: tally.total + 1 });
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
