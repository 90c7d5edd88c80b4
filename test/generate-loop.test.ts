// The generation loop runs N sequences as it runs one: a batch whose sequences end at different
// steps, for different reasons (a stop string, maxNewTokens, maxContext), gives each prompt what a
// session generating it alone gives, chunk text, tokens and finish reason alike, and frees every
// page. Options are drawn afresh on every run.
import * as path from "node:path";
import { type GenerateOptions, loadModel, type Model, type SessionOptions } from "../lib";
import { fixtureRoot, readReference } from "./helpers/fixtures";
import { Random } from "./helpers/reference";

const rng = new Random();
const reference = readReference("llama-tiny");
// Prompts of 12, 10 and 19 tokens: the batch's sequences reach a small maxContext at different steps.
const prompts = [reference.cases[0].prompt, reference.cases[2].prompt, reference.cases[3].prompt];
const longestPrompt = Math.max(...[0, 2, 3].map((i) => reference.cases[i].ids.length));

let model: Model;
beforeAll(async () => {
  model = await loadModel(path.join(fixtureRoot, "llama-tiny"), { device: "cpu", kvCacheBytes: 8 * 2 ** 20, pageSize: 4 });
});
afterAll(async () => model?.dispose());

/** What a session gives for `prompt` alone: its chunks joined, and the finish reason of the last. */
async function alone(prompt: string, options: GenerateOptions & SessionOptions) {
  const { maxContext, prefillChunk, hybrid, ...generate } = options;
  const session = model.createSession({ maxContext, prefillChunk, hybrid });
  try {
    let text = "";
    const tokens: number[] = [];
    let finishReason: string | undefined;
    for await (const chunk of session.generate(prompt, generate)) {
      text += chunk.text;
      tokens.push(...chunk.tokens);
      finishReason = chunk.finishReason;
    }
    return { text, tokens, finishReason };
  } finally {
    session.dispose();
  }
}

/** A substring of a greedy continuation's text, so that some sequence stops at it. */
function someStop(): string[] {
  const text = reference.cases[rng.int(0, 3)].greedyText;
  const at = rng.int(2, text.length - 4);
  return [text.slice(at, at + rng.int(1, 3))];
}

function drawOptions(): GenerateOptions & SessionOptions {
  const sampled = rng.next() < 0.5;
  return {
    maxNewTokens: rng.int(0, 14),
    maxContext: longestPrompt + rng.int(1, 16),
    stopAtEos: rng.next() < 0.5,
    ...(rng.next() < 0.6 ? { stop: someStop() } : {}),
    ...(sampled
      ? {
          temperature: 0.5 + rng.next(),
          topK: rng.int(0, 40),
          seed: rng.pick([rng.int(0, 2 ** 31), Number.MAX_SAFE_INTEGER - rng.int(0, 1), -rng.int(1, 2 ** 40)]),
          repetitionPenalty: rng.next() < 0.5 ? 1.3 : 1,
        }
      : {}),
    ...(rng.next() < 0.3 ? { hybrid: { mode: "fixed" as const, lazyLayers: [1], sink: 1, window: 6 } } : {}),
  };
}

test("a batch gives each prompt what a session generating it alone gives, whatever ends it", async () => {
  const greedyText = reference.cases[0].greedyText;
  const mid = Math.floor(greedyText.length / 2);
  const rounds: Array<GenerateOptions & SessionOptions> = [
    // Prompt 0 stops at a string of its own continuation while the others go on.
    { maxNewTokens: 32, stop: [greedyText.slice(mid, mid + 3)], stopAtEos: false },
    // Each prompt reaches maxContext at its own step.
    { maxNewTokens: 32, maxContext: longestPrompt + rng.int(1, 4), stopAtEos: false },
    // The largest seed: prompt 1's seed + 1 is past 2^53 (it failed after prompt 0 was prefilled).
    { maxNewTokens: 8, temperature: 1, seed: Number.MAX_SAFE_INTEGER, stopAtEos: false },
    ...Array.from({ length: 6 }, drawOptions),
  ];
  const reasons = new Set<string>();
  for (const options of rounds) {
    const used = model.pool.usedPages;
    const batch = await model.generateBatch(prompts, options);
    expect(model.pool.usedPages).toBe(used);
    for (const [i, prompt] of prompts.entries()) {
      // Prompt i of a batch samples with seed + i, in the 32 bits a sampler takes of its seed (so
      // that a seed near 2^53 does not overflow).
      const seed = options.seed === undefined ? undefined : ((options.seed >>> 0) + i) >>> 0;
      const single = await alone(prompt, { ...options, seed });
      const got = { text: batch[i].text, tokens: batch[i].tokens, finishReason: batch[i].finishReason };
      if (JSON.stringify(got) !== JSON.stringify(single))
        throw new Error(
          `seed ${rng.seed}, options ${JSON.stringify(options)}, prompt ${i}: batch ${JSON.stringify(got)}, alone ${JSON.stringify(single)}`,
        );
      reasons.add(single.finishReason!);
    }
  }
  expect([...reasons]).toEqual(expect.arrayContaining(["stop", "context"]));
});
