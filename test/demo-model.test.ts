// The story `npm run demo` tells, on the trained demo model (models/demo) on the CPU: a pass key
// hidden early in a Brown-corpus document is answered with full attention and with hybrid auto at
// 50% full layers (which holds fewer KV bytes), and is not answered when every layer streams over
// a sink + window that leaves the needle out. Seeds and depths are fresh on every run (and in
// every failure message). The context is short (640 tokens) to keep the CPU run brief; the
// window of 256 still leaves the needle hundreds of tokens out of the lazy layers' reach.
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
const draw = () => ({ seed: Math.floor(Math.random() * 1e6), depth: Math.round(5 + 25 * Math.random()) / 100 });

/** A passkey sample at a fresh (seed, depth), with its needle beyond the lazy layers' window. */
function passkeySample({ seed, depth }: { seed: number; depth: number }): TaskSample {
  const sample = makeSample(model.tokenizer, brownCorpus(), { task: "passkey", context, depth, seed }, { chat: false });
  const needle = sample.needles.find((n) => n.answering);
  expect(sample.prompt.length - (needle?.token ?? 0)).toBeGreaterThan(shape.window + 100);
  return sample;
}

describe(`passkey on models/demo at ${context} tokens (sink ${shape.sink}, window ${shape.window})`, () => {
  // Full attention itself misses about one pass key in forty at this length (a digit swapped or
  // dropped), so each case draws documents until full attention answers one, and asks the other
  // modes about that document. Three misses in a row (about 2e-5) fail the case, so a model
  // that misses often does not pass by redrawing.
  test.each([1, 2])("case %i: full and auto 50% answer a pass key, streaming-all does not", async () => {
    const tried: Array<{ seed: number; depth: number; output: string }> = [];
    let sample: TaskSample | undefined;
    let full: Awaited<ReturnType<typeof answer>> | undefined;
    while (tried.length < 3 && !full?.correct) {
      const at = draw();
      sample = passkeySample(at);
      full = await answer(sample, modes.full);
      tried.push({ ...at, output: full.output });
    }
    expect({ tried, correct: full?.correct }).toMatchObject({ correct: true });
    if (!sample || !full) throw new Error("unreachable: at least one document was drawn");
    const auto = await answer(sample, modes.auto);
    const streamingAll = await answer(sample, modes.streamingAll);
    const layers = model.config.layers;
    const drawn = tried[tried.length - 1];

    expect({ drawn, answer: sample.answer, ...full }).toMatchObject({ correct: true, lazyLayers: [] });
    expect({ drawn, answer: sample.answer, ...auto }).toMatchObject({ correct: true });
    expect(auto.lazyLayers).toHaveLength(layers / 2);
    expect(auto.kvBytes).toBeLessThan(full.kvBytes);
    expect({ drawn, answer: sample.answer, ...streamingAll }).toMatchObject({ correct: false });
    expect(streamingAll.lazyLayers).toEqual(Array.from({ length: layers }, (_, i) => i));
    expect(streamingAll.kvBytes).toBeLessThan(auto.kvBytes);
  });
});
