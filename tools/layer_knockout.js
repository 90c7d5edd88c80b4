// Which layers a task needs to see the whole prompt: the samples of `lighttransfer eval` (lib/eval
// makeSample, the eval's default depths, seeds 0..SEEDS-1) answered greedily with no layer lazy, then with each
// layer alone made streaming (hybrid fixed, sink 4, window 64, prefilled with the streaming mask,
// so that it never sees the needles, only the question and the answer's start), judged by exact
// match (isCorrect). A layer whose knock-out costs the task is one where the task retrieves.
//   node tools/layer_knockout.js MODEL_DIR [CONTEXT=1024] [SEEDS=4] [TASKS=all four, comma-separated] [DEVICE=cpu]
// Run from the repository root after `npm run build` (it loads dist/lib).
const { answerSample, brownCorpus, isCorrect, loadModel, makeSample, taskNames } = require("../dist/lib");
const { defaultEvalSettings } = require("../dist/lib/eval/config");

async function main() {
  const [dir, contextArg = "1024", seedsArg = "4", tasksArg = taskNames.join(","), device = "cpu"] = process.argv.slice(2);
  if (!dir) throw new Error("usage: node tools/layer_knockout.js MODEL_DIR [CONTEXT] [SEEDS] [TASKS] [DEVICE]");
  const unknown = tasksArg.split(",").filter((t) => !taskNames.includes(t));
  if (unknown.length) throw new Error(`unknown task ${unknown.join(", ")}: the tasks are ${taskNames.join(", ")}`);
  const model = await loadModel(dir, { device });
  const corpus = brownCorpus();
  // as the eval makes its samples
  const sampleOptions = { chat: false, maxPositions: model.config.maxPositionEmbeddings, extraTokens: defaultEvalSettings.extraTokens };
  try {
    for (const task of tasksArg.split(",")) {
      const samples = [];
      for (let seed = 0; seed < Number(seedsArg); seed++)
        for (const depth of defaultEvalSettings.depths)
          samples.push(makeSample(model.tokenizer, corpus, { task, context: Number(contextArg), depth, seed }, sampleOptions));
      const cells = [];
      for (let layer = -1; layer < model.config.layers; layer++) {
        const hybrid = layer < 0 ? { mode: "off" } : { mode: "fixed", lazyLayers: [layer], sink: 4, window: 64, prefill: "streaming" };
        let right = 0;
        for (const sample of samples) {
          const out = await answerSample(model, sample, { hybrid, extraTokens: defaultEvalSettings.extraTokens });
          if (isCorrect(out.text, sample.answer)) right++;
        }
        cells.push(`${layer < 0 ? "none" : `layer ${layer}`} ${right}/${samples.length}`);
      }
      console.log(`${task} at ${contextArg} tokens, right with no layer lazy / each layer alone lazy: ${cells.join(", ")}`);
    }
  } finally {
    await model.dispose();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
