// One-off (twenty-seventh session): lazy ratios (auto 50%, sink 4) of lib/eval's prompts, seed 0,
// depths 0, 0.5, 1, in one of three views:
//   prompt-end  per layer, at the prompt's last 32 queries (what auto mode uses), three tasks
//   answer      per layer, at the prompt's last 32 queries and at the right answer's own tokens
//               appended to the prompt (teacher-forced)
//   heads       per head, at the prompt's last 32 queries
//   node lazy-ratios.js MODEL_DIR CONTEXT WINDOW [prompt-end|answer|heads]
const { loadModel } = require("../../../../dist/lib");
const { makeSample } = require("../../../../dist/lib/eval/tasks");
const { brownCorpus } = require("../../../../dist/lib/eval/corpus");

const fixed = (values) => Array.from(values, (r) => r.toFixed(2)).join(" ");

(async () => {
  const [dir, ctx, window, view = "prompt-end"] = process.argv.slice(2);
  if (!["prompt-end", "answer", "heads"].includes(view)) throw new Error(`unknown view ${view}`);
  const model = await loadModel(dir, { device: "cpu" });
  const corpus = brownCorpus();
  // The hybrid state after prefilling `ids` with the ratio taken over its last `lastQueries` queries.
  const ratiosOf = async (ids, lastQueries) => {
    const hybrid = { mode: "auto", fullLayers: 0.5, sink: 4, window: Number(window), lastQueries };
    const session = model.createSession({ hybrid });
    try {
      for await (const _ of session.generate(ids, { maxNewTokens: 0 }));
      return session.stats.hybrid;
    } finally {
      session.dispose();
    }
  };
  const layerLine = (h) => `${fixed(h.ratios)}  lazy ${h.lazyLayers.join(",")}`;
  const tasks = view === "prompt-end" ? ["variable-tracking", "niah-multikey", "passkey"] : ["variable-tracking", "niah-multikey"];
  for (const task of tasks) {
    const rows = [];
    for (const depth of [0, 0.5, 1]) {
      const s = makeSample(model.tokenizer, corpus, { task, context: Number(ctx), depth, seed: 0 }, { chat: false, maxPositions: 4096, extraTokens: 8 });
      const end = await ratiosOf(s.prompt, 32);
      if (view === "prompt-end") {
        rows.push(layerLine(end));
      } else if (view === "heads") {
        console.log(`${task} depth ${depth}: ${end.headRatios.map((hr, l) => `L${l}[${fixed(hr)}]`).join(" ")}`);
      } else {
        const answer = await ratiosOf([...s.prompt, ...s.answerIds], s.answerIds.length);
        console.log(`${task} depth ${depth} (answer ${s.answerIds.length} tokens)`);
        console.log(`  ${"prompt's last 32".padEnd(17)} ${layerLine(end)}\n  ${"answer's tokens".padEnd(17)} ${layerLine(answer)}`);
      }
    }
    if (view === "prompt-end") console.log(`${task}\n  ${rows.join("\n  ")}`);
  }
  model.dispose();
})();
