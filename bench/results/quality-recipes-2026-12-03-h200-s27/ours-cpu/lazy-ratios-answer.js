// One-off (twenty-seventh session): per-layer lazy ratios (auto 50%, sink 4) over the prompt's last 32 queries and over
// the right answer's tokens appended to the prompt (teacher-forced).   node lazy-ratios-answer.js MODEL_DIR CONTEXT WINDOW
const { loadModel } = require("../../../../dist/lib");
const { makeSample } = require("../../../../dist/lib/eval/tasks");
const { brownCorpus } = require("../../../../dist/lib/eval/corpus");
(async () => {
  const [dir, ctx, window] = process.argv.slice(2);
  const model = await loadModel(dir, { device: "cpu" });
  const corpus = brownCorpus();
  for (const task of ["variable-tracking", "niah-multikey"]) {
    for (const depth of [0, 0.5, 1]) {
      const s = makeSample(model.tokenizer, corpus, { task, context: Number(ctx), depth, seed: 0 }, { chat: false, maxPositions: 4096, extraTokens: 8 });
      const out = [];
      for (const [label, ids, last] of [["prompt's last 32", s.prompt, 32], ["answer's tokens", [...s.prompt, ...s.answerIds], s.answerIds.length]]) {
        const session = model.createSession({ hybrid: { mode: "auto", fullLayers: 0.5, sink: 4, window: Number(window), lastQueries: last } });
        for await (const _ of session.generate(ids, { maxNewTokens: 0 }));
        const h = session.stats.hybrid;
        out.push(`${label.padEnd(17)} ${h.ratios.map((r) => r.toFixed(2)).join(" ")}  lazy ${h.lazyLayers.join(",")}`);
        session.dispose();
      }
      console.log(`${task} depth ${depth} (answer ${s.answerIds.length} tokens)\n  ${out.join("\n  ")}`);
    }
  }
  model.dispose();
})();
