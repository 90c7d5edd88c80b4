// One-off (twenty-seventh session): per-head lazy ratios (auto 50%, sink 4) at the prompt's last 32 queries.
//   node lazy-ratios-heads.js MODEL_DIR CONTEXT WINDOW
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
      const session = model.createSession({ hybrid: { mode: "auto", fullLayers: 0.5, sink: 4, window: Number(window) } });
      for await (const _ of session.generate(s.prompt, { maxNewTokens: 0 }));
      const h = session.stats.hybrid;
      console.log(`${task} depth ${depth}: ` + h.headRatios.map((hr, l) => `L${l}[${Array.from(hr).map((r) => r.toFixed(2)).join(" ")}]`).join(" "));
      session.dispose();
    }
  }
  model.dispose();
})();
