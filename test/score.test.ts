// model.score: teacher-forced log-probabilities of a continuation, checked against the logits
// transformers gives at every position, against single-token scoring, batched against one by one,
// in the hybrid modes, on bad input, and for the KV pages it must give back.
import * as path from "node:path";
import { loadModel, type Model, PoolExhaustedError } from "../lib";
import { fixtureModels, fixtureRoot, readLogits, readReference } from "./helpers/fixtures";
import { Random } from "./helpers/reference";

const rng = new Random();

// The logits tests allow 1e-4 of the logits' scale per logit (f32 here and in the reference, only
// summation order differs). A log-softmax value x_t − logsumexp(x) moves by at most the largest
// logit error twice over (once in x_t, at most once in logsumexp), so twice that bound.
const logitTolerance = (scale: number) => 1e-4 * Math.max(1, scale);
const logprobTolerance = (scale: number) => 2 * logitTolerance(scale);

/** log softmax(row)[token] in float64. */
function logSoftmax(row: ArrayLike<number>, token: number): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let j = 0; j < row.length; j++) max = Math.max(max, row[j]);
  let sum = 0;
  for (let j = 0; j < row.length; j++) sum += Math.exp(row[j] - max);
  return row[token] - max - Math.log(sum);
}

/** A split point drawn fresh on every run, leaving at least one token on each side. */
const randomSplit = (n: number) => rng.int(1, n - 1);

function expectClose(got: readonly number[], want: readonly number[], tolerance: number, what: string): void {
  expect(got.length).toBe(want.length);
  const worst = Math.max(...got.map((g, i) => Math.abs(g - want[i])));
  if (!(worst <= tolerance)) throw new Error(`${what}: max |logprob error| ${worst} (tolerance ${tolerance})`);
}

describe(`seed ${rng.seed}`, () => {
  describe.each(fixtureModels)("%s: score", (name) => {
    const ref = readReference(name);
    const dir = path.join(fixtureRoot, name);
    let model: Model;
    beforeAll(async () => {
      model = await loadModel(dir, { device: "cpu", kvCacheBytes: 8 * 2 ** 20 });
    });
    afterAll(async () => model?.dispose());

    test.each(ref.cases.map((c, i) => [i, c.ids.length] as const))(
      "equals the log-softmax of transformers' logits, case %i (%i tokens)",
      async (i) => {
        const c = ref.cases[i];
        const want = readLogits(name, c);
        const vocab = model.config.vocabSize;
        const split = randomSplit(c.ids.length);
        const continuation = c.ids.slice(split);
        const got = await model.score(Int32Array.from(c.ids.slice(0, split)), continuation);
        let scale = 0;
        const expected = continuation.map((token, k) => {
          const row = want.subarray((split + k - 1) * vocab, (split + k) * vocab);
          for (const x of row) scale = Math.max(scale, Math.abs(x));
          return logSoftmax(row, token);
        });
        expect(got.tokens).toEqual(continuation);
        expectClose(got.logprobs, expected, logprobTolerance(scale), `split at ${split}`);
        const sum = expected.reduce((a, b) => a + b, 0);
        expect(Math.abs(got.sum - sum)).toBeLessThanOrEqual(continuation.length * logprobTolerance(scale));
        expect(got.perplexity).toBeCloseTo(Math.exp(-got.sum / continuation.length), 12);
        expect(got.hybrid.mode).toBe("off");
      },
    );

    test("a text continuation is tokenized without special tokens", async () => {
      const c = ref.cases[0];
      const text = " and then";
      const got = await model.score(c.prompt, text);
      expect(got.tokens).toEqual(model.tokenizer.encode(text, { addSpecialTokens: false }));
      expect((await model.score(c.ids, got.tokens)).logprobs).toEqual(got.logprobs);
    });

    test("a one-token continuation is the log-softmax of the prompt's last logits; a longer one sums single-token scores", async () => {
      const c = ref.cases[1];
      const split = randomSplit(c.ids.length - 4);
      const prompt = c.ids.slice(0, split);
      const seq = model.decoder.createSequence();
      let last: Float32Array;
      try {
        last = model.decoder.prefill(seq, prompt);
      } finally {
        seq.dispose();
      }
      const one = await model.score(prompt, [c.ids[split]]);
      expect(one.logprobs).toEqual([logSoftmax(last, c.ids[split])]);
      const continuation = c.ids.slice(split, split + 4);
      const whole = await model.score(prompt, continuation);
      const steps = await Promise.all(continuation.map((t, k) => model.score(c.ids.slice(0, split + k), [t])));
      let scale = 0;
      for (const x of last) scale = Math.max(scale, Math.abs(x));
      expectClose(
        whole.logprobs,
        steps.map((s) => s.logprobs[0]),
        logprobTolerance(scale),
        "whole vs single steps",
      );
    });

    test("prefill with targets gives the log-softmax of the rows allLogits gives, across head blocks", async () => {
      // 1100 random tokens: more rows than the head scores at a time (1024), so two blocks.
      const vocab = model.config.vocabSize;
      const ids = Array.from({ length: 1100 }, () => rng.int(0, vocab - 1));
      const targets = ids.slice(1);
      const run = (options: { allLogits?: boolean; targets?: number[] }) => {
        const seq = model.decoder.createSequence();
        try {
          return model.decoder.prefill(seq, ids, options);
        } finally {
          seq.dispose();
        }
      };
      const all = run({ allLogits: true });
      const got = run({ targets });
      expect(got).toHaveLength(targets.length);
      let scale = 0;
      for (const x of all) scale = Math.max(scale, Math.abs(x));
      const want = targets.map((t, i) => logSoftmax(all.subarray(i * vocab, (i + 1) * vocab), t));
      expectClose(Array.from(got), want, logprobTolerance(scale), "targets vs allLogits");
      const seq = model.decoder.createSequence();
      try {
        expect(() => model.decoder.prefill(seq, ids.slice(0, 3), { targets: [1, 2, 3, 4] })).toThrow(/4 targets for 3 tokens/);
        expect(() => model.decoder.prefill(seq, ids.slice(0, 3), { targets: [vocab] })).toThrow(/prefill: targets\[0\]/);
        expect(() => model.decoder.prefill(seq, ids.slice(0, 3), { targets: [1], allLogits: true })).toThrow(/not both/);
        expect(seq.length).toBe(0);
      } finally {
        seq.dispose();
      }
    });

    test("scoreBatch gives the numbers of one-by-one scoring", async () => {
      const requests = ref.cases.slice(0, 3).map((c) => {
        const split = randomSplit(c.ids.length);
        return { prompt: c.ids.slice(0, split), continuation: c.ids.slice(split) };
      });
      const batch = await model.scoreBatch(requests);
      const single = await Promise.all(requests.map((r) => model.score(r.prompt, r.continuation)));
      expect(batch).toEqual(single);
    });

    test("hybrid: fixed with no lazy layers equals off; lazy layers past the ring change the numbers; auto chooses its layers", async () => {
      const c = ref.cases[1];
      const prompt = c.ids.slice(0, 30),
        continuation = c.ids.slice(30);
      const off = await model.score(prompt, continuation);
      if (model.config.slidingWindow !== null) {
        // Sliding-window layers are bounded already: the policy refuses them in score as in generation.
        await expect(model.score(prompt, continuation, { hybrid: { mode: "fixed", lazyLayers: [] } })).rejects.toThrow(/sliding window/);
        return;
      }
      const none = await model.score(prompt, continuation, { hybrid: { mode: "fixed", lazyLayers: [] } });
      expect(none.logprobs).toEqual(off.logprobs);
      const ring = { sink: 1, window: 6 };
      const fixed = await model.score(prompt, continuation, { hybrid: { mode: "fixed", lazyLayers: [0], ...ring } });
      expect(fixed.hybrid.lazyLayers).toEqual([0]);
      expect(fixed.logprobs.every((x) => Number.isFinite(x) && x <= 0)).toBe(true);
      expect(fixed.logprobs).not.toEqual(off.logprobs);
      const auto = await model.score(prompt, continuation, { hybrid: { mode: "auto", fullLayers: 1, ...ring } });
      expect(auto.hybrid.lazyLayers).toHaveLength(model.config.layers - 1);
      expect(auto.logprobs.every((x) => Number.isFinite(x) && x <= 0)).toBe(true);
    });

    test("hybrid auto with a prompt within sink + window scores a generation with that generation's logprobs", async () => {
      if (model.config.slidingWindow !== null) return; // refused above, as in generation
      // The lazy-layer choice waits until the sequence grows past sink + window; scoring must make
      // it at the same token as generation, and score the rest in the layers it chose.
      const ring = { sink: rng.int(1, 4), window: rng.int(8, 24) };
      const hybrid = { mode: "auto" as const, fullLayers: 0.5, lastQueries: rng.int(2, 8), ...ring };
      const prompt = Array.from({ length: rng.int(2, ring.sink + ring.window) }, () => rng.int(3, model.config.vocabSize - 1));
      const session = model.createSession({ hybrid });
      const tokens: number[] = [];
      const logprobs: number[] = [];
      for await (const chunk of session.generate(prompt, {
        maxNewTokens: ring.sink + ring.window + rng.int(4, 16),
        logprobs: 0,
        stopAtEos: false,
      })) {
        tokens.push(...chunk.tokens);
        logprobs.push(...chunk.logprobs!.map((l) => l.logprob));
      }
      const generated = session.stats.hybrid;
      await session.dispose();
      expect(generated.pending).toBe(false);
      const scored = await model.score(prompt, tokens, { hybrid });
      expect(scored.hybrid.lazyLayers).toEqual(generated.lazyLayers);
      expect(scored.hybrid.pending).toBe(false);
      expectClose(scored.logprobs, logprobs, 1e-4, `prompt ${prompt.length}, ring ${ring.sink} + ${ring.window}`);
      const off = await model.score(prompt, tokens);
      expect(scored.logprobs).not.toEqual(off.logprobs);
    });

    test("bad input is an Error and holds no pages", async () => {
      const free = model.pool.freePages;
      const prompt = ref.cases[0].ids;
      await expect(model.score(prompt, [])).rejects.toThrow(/no tokens/);
      await expect(model.score(prompt, "")).rejects.toThrow(/no tokens/);
      await expect(model.score(prompt, [1, model.config.vocabSize])).rejects.toThrow(/continuation\[1\]/);
      await expect(model.score(prompt, [1.5])).rejects.toThrow(/integers/);
      await expect(model.score([-1], [1])).rejects.toThrow(/prompt/);
      await expect(model.scoreBatch([{ prompt, continuation: [1] }, null as never])).rejects.toThrow(/requests\[1\]/);
      await expect(model.score(prompt, [1], { maxContext: prompt.length })).rejects.toThrow(
        `score: the prompt and the continuation have ${prompt.length} + 1 tokens: more than maxContext ${prompt.length}. Shorten them or ask for a larger maxContext (an option of score)`,
      );
      await expect(model.scoreBatch([{ prompt } as never])).rejects.toThrow(
        "scoreBatch: continuation must be text or token ids (a number[] or Int32Array), got undefined",
      );
      expect(model.pool.freePages).toBe(free);
    });

    test("an aborted signal stops scoring", async () => {
      const controller = new AbortController();
      controller.abort();
      await expect(model.score(ref.cases[0].ids, [1], { signal: controller.signal })).rejects.toThrow(/abort/i);
    });
  });

  test("the pool gets every page back after a score and after one that runs out of pages", async () => {
    const name = fixtureModels[0];
    const ref = readReference(name);
    const probe = await loadModel(path.join(fixtureRoot, name), { device: "cpu", kvCacheBytes: 2 ** 20 });
    const { layers } = probe.config;
    const { pageBytes, pageSize } = probe.pool;
    await probe.dispose();
    // One page per layer: a prompt of up to pageSize tokens fits, a continuation past it does not.
    const model = await loadModel(path.join(fixtureRoot, name), { device: "cpu", kvCacheBytes: layers * pageBytes });
    try {
      const ids = ref.cases[1].ids;
      const total = model.pool.numPages;
      await model.score(ids.slice(0, 4), ids.slice(4, pageSize));
      expect(model.pool.freePages).toBe(total);
      await expect(model.score(ids.slice(0, 4), ids.slice(4, pageSize + 8))).rejects.toThrow(PoolExhaustedError);
      expect(model.pool.freePages).toBe(total);
    } finally {
      await model.dispose();
    }
  });
});
