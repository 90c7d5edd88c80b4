// logprobs in generate and generateBatch: each generated token's log-probability and its top
// alternatives, checked against the log-softmax of transformers' logits (fixtures) and, for later
// tokens, of logits from an independent path (a prefill with logits at every position) in float64;
// the tokens chosen are the ones generation picks without logprobs, greedy and sampled alike.
import * as path from "node:path";
import { loadModel, type Model, type TokenLogprob } from "../lib";
import { fixtureModels, fixtureRoot, readLogits, readReference } from "./helpers/fixtures";
import { Random } from "./helpers/reference";

const rng = new Random();

// As in score.test.ts: f32 logits that differ from the reference only in summation order, 1e-4
// of the logits' scale per logit; a log-softmax value moves by at most twice that.
const logprobTolerance = (scale: number) => 2e-4 * Math.max(1, scale);

/** log softmax(row) in float64, and the row's largest |logit|. */
function logSoftmax(row: ArrayLike<number>): { values: Float64Array; scale: number } {
  let max = Number.NEGATIVE_INFINITY,
    scale = 0;
  for (let j = 0; j < row.length; j++) {
    max = Math.max(max, row[j]);
    scale = Math.max(scale, Math.abs(row[j]));
  }
  let sum = 0;
  for (let j = 0; j < row.length; j++) sum += Math.exp(row[j] - max);
  return { values: Float64Array.from(row, (x) => x - max - Math.log(sum)), scale };
}

/**
 * Checks one token's entry against the reference log-softmax of its row: its own logprob, the
 * alternatives' count and order (non-increasing), each alternative's logprob, and that the k-th
 * best reference value is what the k-th alternative has (robust to near-ties swapping ids).
 */
function expectMatchesRow(entry: TokenLogprob, token: number, row: ArrayLike<number>, k: number, what: string): void {
  const { values, scale } = logSoftmax(row);
  const tol = logprobTolerance(scale);
  expect(entry.id).toBe(token);
  const fail = (m: string) => {
    throw new Error(`${what}: ${m} (tolerance ${tol})`);
  };
  if (!(Math.abs(entry.logprob - values[token]) <= tol)) fail(`logprob ${entry.logprob}, reference ${values[token]}`);
  expect(entry.top_logprobs).toHaveLength(Math.min(k, row.length));
  const sorted = Array.from(values).sort((a, b) => b - a);
  entry.top_logprobs.forEach((t, i) => {
    if (!(Math.abs(t.logprob - values[t.id]) <= tol)) fail(`alternative ${i} (id ${t.id}): ${t.logprob}, reference ${values[t.id]}`);
    if (!(Math.abs(t.logprob - sorted[i]) <= 2 * tol)) fail(`alternative ${i} is ${t.logprob}, the ${i}-th best is ${sorted[i]}`);
    if (i > 0) expect(t.logprob).toBeLessThanOrEqual(entry.top_logprobs[i - 1].logprob);
  });
}

/** Logits after every token of `ids`, from a prefill on a fresh sequence (not the decode steps generation ran). */
function prefillLogits(model: Model, ids: number[]): Float32Array {
  const seq = model.decoder.createSequence();
  try {
    return model.decoder.prefill(seq, ids, { allLogits: true });
  } finally {
    seq.dispose();
  }
}

async function run(model: Model, prompt: number[], options: object) {
  const [result] = await model.generateBatch([prompt], { stopAtEos: false, ...options });
  return result;
}

describe(`seed ${rng.seed}`, () => {
  describe.each(fixtureModels)("%s: logprobs", (name) => {
    const ref = readReference(name);
    let model: Model;
    beforeAll(async () => {
      model = await loadModel(path.join(fixtureRoot, name), { device: "cpu", kvCacheBytes: 8 * 2 ** 20 });
    });
    afterAll(async () => model?.dispose());

    test.each(ref.cases.map((c, i) => [i, c.ids.length] as const))(
      "the first token's logprobs are the log-softmax of transformers' logits, case %i (%i tokens)",
      async (i) => {
        const c = ref.cases[i];
        const vocab = model.config.vocabSize;
        const split = rng.int(1, c.ids.length);
        const k = rng.int(1, 20);
        const result = await run(model, c.ids.slice(0, split), { maxNewTokens: 1, logprobs: k });
        const row = readLogits(name, c).subarray((split - 1) * vocab, split * vocab);
        expect(result.logprobs).toHaveLength(1);
        expectMatchesRow(result.logprobs![0], result.tokens[0], row, k, `prefix of ${split}`);
      },
    );

    test("greedy: every token's logprobs match an independent prefill's, the tokens are those chosen without logprobs", async () => {
      const c = ref.cases[1];
      const prompt = c.ids.slice(0, rng.int(2, c.ids.length));
      const k = rng.int(1, 8);
      const plain = await run(model, prompt, { maxNewTokens: 10 });
      const result = await run(model, prompt, { maxNewTokens: 10, logprobs: k });
      expect(result.tokens).toEqual(plain.tokens);
      expect(result.text).toBe(plain.text);
      expect(result.logprobs).toHaveLength(result.tokens.length);
      const vocab = model.config.vocabSize;
      const all = prefillLogits(model, [...prompt, ...result.tokens.slice(0, -1)]);
      result.tokens.forEach((token, t) => {
        const at = prompt.length - 1 + t;
        const entry = result.logprobs![t];
        expectMatchesRow(entry, token, all.subarray(at * vocab, (at + 1) * vocab), k, `token ${t}`);
        // Greedy takes the most likely token (ties aside, which random logits do not have).
        expect(entry.top_logprobs[0].id).toBe(token);
      });
    });

    test("sampled with topK, temperature and a repetition penalty: same tokens as without logprobs, logprobs of the raw logits", async () => {
      const c = ref.cases[0];
      const prompt = c.ids;
      const options = { maxNewTokens: 12, temperature: 1.5, topK: 40, repetitionPenalty: 1.3, seed: rng.int(0, 2 ** 31) };
      const plain = await run(model, prompt, options);
      // k = 1: the sampled token is often outside the stored alternatives, so its logit is read on its own.
      const result = await run(model, prompt, { ...options, logprobs: 1 });
      expect(result.tokens).toEqual(plain.tokens);
      const vocab = model.config.vocabSize;
      const all = prefillLogits(model, [...prompt, ...result.tokens.slice(0, -1)]);
      let outside = 0;
      result.tokens.forEach((token, t) => {
        const at = prompt.length - 1 + t;
        const entry = result.logprobs![t];
        expectMatchesRow(entry, token, all.subarray(at * vocab, (at + 1) * vocab), 1, `token ${t}`);
        if (entry.top_logprobs[0].id !== token) outside++;
      });
      expect(outside).toBeGreaterThan(0);
    });
  });

  describe("llama-tiny: logprobs as the API gives them", () => {
    const name = "llama-tiny";
    const ref = readReference(name);
    let model: Model;
    beforeAll(async () => {
      model = await loadModel(path.join(fixtureRoot, name), { device: "cpu", kvCacheBytes: 8 * 2 ** 20 });
    });
    afterAll(async () => model?.dispose());

    test("tokens are spelled with their text and bytes; the bytes of all tokens are the text's UTF-8", async () => {
      const result = await run(model, ref.cases[2].ids, { maxNewTokens: 16, logprobs: 3 });
      const bytes = result.logprobs!.flatMap((l) => l.bytes!);
      expect(Buffer.from(bytes).toString("utf8")).toBe(model.tokenizer.decode(result.tokens));
      for (const l of result.logprobs!) {
        expect(l.token).toBe(model.tokenizer.decode([l.id]));
        for (const t of l.top_logprobs) expect(t.bytes).toEqual(model.tokenizer.tokenBytes(t.id));
      }
    });

    test("a token holding part of a UTF-8 character keeps its own bytes", () => {
      const text = "naïve 日本語 ✓";
      const ids = model.tokenizer.encode(text, { addSpecialTokens: false });
      const bytes = ids.flatMap((id) => model.tokenizer.tokenBytes(id));
      expect(Buffer.from(bytes).toString("utf8")).toBe(text);
    });

    test("streamed chunks carry one entry per token, batches one per generated token, logprobs: 0 gives no alternatives", async () => {
      const prompt = ref.cases[3].ids;
      const chunks: TokenLogprob[] = [];
      for await (const chunk of model.generate(prompt, { maxNewTokens: 6, stopAtEos: false, logprobs: 0 })) {
        expect(chunk.logprobs).toHaveLength(chunk.tokens.length);
        chunks.push(...chunk.logprobs!);
      }
      expect(chunks.every((l) => l.top_logprobs.length === 0)).toBe(true);
      const [alone, other] = await model.generateBatch([prompt, ref.cases[0].ids], { maxNewTokens: 6, stopAtEos: false, logprobs: 0 });
      expect(alone.logprobs).toHaveLength(alone.tokens.length);
      expect(other.logprobs).toHaveLength(other.tokens.length);
      alone.logprobs!.forEach((l, i) => expect(l.logprob).toBeCloseTo(chunks[i].logprob, 5));
      const none = await run(model, prompt, { maxNewTokens: 0, logprobs: 2 });
      expect(none.logprobs).toEqual([]);
      expect((await run(model, prompt, { maxNewTokens: 2 })).logprobs).toBeUndefined();
    });

    test.each([-1, 1.5, 257, "3", Number.NaN])("logprobs %p is an error naming the option", async (bad) => {
      await expect(model.generateBatch([[1, 2]], { logprobs: bad as number })).rejects.toThrow(
        /generateBatch: logprobs must be an integer/,
      );
      const stream = model.generate([1, 2], { logprobs: bad as number });
      await expect(stream.next()).rejects.toThrow(/generate: logprobs must be an integer/);
    });

    test("without a tokenizer: ids and log-probabilities, empty text and no bytes", async () => {
      const bare = await loadModel(path.join(fixtureRoot, name), { device: "cpu", kvCacheBytes: 4 * 2 ** 20, tokenizer: false });
      try {
        const [result] = await bare.generateBatch([ref.cases[0].ids], { maxNewTokens: 3, stopAtEos: false, logprobs: 2 });
        const [withText] = await model.generateBatch([ref.cases[0].ids], { maxNewTokens: 3, stopAtEos: false, logprobs: 2 });
        result.logprobs!.forEach((l, i) => {
          expect(l).toMatchObject({ token: "", bytes: null, id: withText.logprobs![i].id, logprob: withText.logprobs![i].logprob });
          expect(l.top_logprobs.map((t) => t.id)).toEqual(withText.logprobs![i].top_logprobs.map((t) => t.id));
        });
      } finally {
        await bare.dispose();
      }
    });
  });
});
