// The story `npm run demo` tells, on the trained demo model (models/demo) on the CPU: a pass key
// hidden early in a Brown-corpus document is answered with full attention and with hybrid auto at
// 50% full layers (which holds fewer KV bytes), and is not answered when every layer streams over
// a sink + window that leaves the needle out. Seeds and depths are fresh on every run. The context
// is short (640 tokens) to keep the CPU run brief; the window of 256 still leaves the needle
// hundreds of tokens out of the lazy layers' reach.
import * as path from "node:path";
import { brownCorpus, type HybridOptions, isCorrect, loadModel, type Model, makeSample, type TaskSample } from "../lib";

const demoDir = path.join(__dirname, "..", "models", "demo");
const context = 640;
const shape = { sink: 4, window: 256 };
const modes = {
  full: { mode: "off" },
  auto: { mode: "auto", fullLayers: 0.5, ...shape },
  streamingAll: { mode: "streaming-all", ...shape },
} satisfies Record<string, HybridOptions>;

let model: Model;
beforeAll(async () => {
  model = await loadModel(demoDir, { device: "cpu", kvCacheBytes: 32 * 2 ** 20 });
});
afterAll(async () => {
  await model?.dispose();
});

/** The greedy answer to a sample in one mode, with the session's lazy layers and KV bytes. */
async function answer(sample: TaskSample, hybrid: HybridOptions) {
  const maxNewTokens = sample.answerIds.length + 4;
  const session = model.createSession({ hybrid, maxContext: sample.prompt.length + maxNewTokens });
  try {
    let output = "";
    for await (const chunk of session.generate(sample.prompt, { maxNewTokens })) output += chunk.text;
    const { kvBytes, hybrid: state } = session.stats;
    return { output, correct: isCorrect(output, sample.answer), lazyLayers: state.lazyLayers, kvBytes };
  } finally {
    session.dispose();
  }
}

// Depths early in the haystack: the needle sits 400 or more tokens before the question.
const cases = Array.from({ length: 2 }, () => ({ seed: Math.floor(Math.random() * 1e6), depth: Math.round(5 + 25 * Math.random()) / 100 }));

describe(`passkey on models/demo at ${context} tokens (sink ${shape.sink}, window ${shape.window})`, () => {
  test.each(cases)("seed $seed, depth $depth: full and auto 50% answer it, streaming-all does not", async ({ seed, depth }) => {
    const sample = makeSample(model.tokenizer, brownCorpus(), { task: "passkey", context, depth, seed }, { chat: false });
    const needle = sample.needles.find((n) => n.answering);
    expect(sample.prompt.length - (needle?.token ?? 0)).toBeGreaterThan(shape.window + 100);

    const full = await answer(sample, modes.full);
    const auto = await answer(sample, modes.auto);
    const streamingAll = await answer(sample, modes.streamingAll);
    const layers = model.config.layers;

    expect({ answer: sample.answer, ...full }).toMatchObject({ correct: true, lazyLayers: [] });
    expect({ answer: sample.answer, ...auto }).toMatchObject({ correct: true });
    expect(auto.lazyLayers).toHaveLength(layers / 2);
    expect(auto.kvBytes).toBeLessThan(full.kvBytes);
    expect({ answer: sample.answer, ...streamingAll }).toMatchObject({ correct: false });
    expect(streamingAll.lazyLayers).toEqual(Array.from({ length: layers }, (_, i) => i));
    expect(streamingAll.kvBytes).toBeLessThan(auto.kvBytes);
  });
});
