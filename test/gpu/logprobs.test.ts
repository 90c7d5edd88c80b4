// logprobs where the logits stay on the device: the top candidates, the softmax mass and single
// logits read back give what float64 over the whole row read back gives; and generation on CUDA
// with logprobs chooses the tokens it chooses without them.
import * as path from "node:path";
import { loadModel, type Model, Tensor } from "../../lib";
import { deviceLogprobs, rowLogprobs } from "../../lib/generate/logprobs";
import { fixtureRoot, readReference } from "../helpers/fixtures";
import { describeWithCuda } from "../helpers/gpu";

const describeGpu = describeWithCuda("logprobs");

describeGpu("logprobs on CUDA", () => {
  test.each([
    ["f32", 3, 1000, 5],
    ["bf16", 2, 32000, 20],
    ["f16", 4, 128256, 1],
  ] as const)("deviceLogprobs over %s logits [%i, %i], k %i, is float64 over the row", (dtype, rows, vocab, k) => {
    const values = Float32Array.from({ length: rows * vocab }, () => 8 * (Math.random() - 0.5));
    const logits = Tensor.from(values, [rows, vocab], { dtype, device: "cuda:0" });
    try {
      const host = logits.toFloat32Array();
      // A random token per row: mostly outside the top k, so its logit is read on its own.
      const chosen = Array.from({ length: rows }, () => Math.floor(Math.random() * vocab));
      const got = deviceLogprobs(logits, k, chosen);
      chosen.forEach((token, b) => {
        const want = rowLogprobs(host.subarray(b * vocab, (b + 1) * vocab), token, k);
        // The device sums the mass in f32 (relative error ~1e-6, kernels' note): logprobs within 1e-5.
        expect(Math.abs(got[b].logprob - want.logprob)).toBeLessThan(1e-5);
        expect(got[b].top.map((t) => t.id)).toEqual(want.top.map((t) => t.id));
        got[b].top.forEach((t, i) => expect(Math.abs(t.logprob - want.top[i].logprob)).toBeLessThan(1e-5));
      });
    } finally {
      logits.dispose();
    }
  });

  describe("generation", () => {
    let model: Model;
    beforeAll(async () => {
      model = await loadModel(path.join(fixtureRoot, "llama-tiny"), { device: "cuda:0", kvCacheBytes: 16 * 2 ** 20 });
    });
    afterAll(async () => model?.dispose());

    test.each([
      ["greedy", {}],
      ["sampled with a repetition penalty", { temperature: 1.2, topK: 50, repetitionPenalty: 1.2, seed: 7 }],
    ])("%s: the same tokens as without logprobs, one entry per token", async (_, sampling) => {
      const prompt = readReference("llama-tiny").cases[1].ids;
      const options = { maxNewTokens: 12, stopAtEos: false, ...sampling };
      const [plain] = await model.generateBatch([prompt], options);
      const [result] = await model.generateBatch([prompt], { ...options, logprobs: 4 });
      expect(result.tokens).toEqual(plain.tokens);
      expect(result.logprobs).toHaveLength(result.tokens.length);
      for (const [t, l] of result.logprobs!.entries()) {
        expect(l.id).toBe(result.tokens[t]);
        expect(l.logprob).toBeLessThanOrEqual(0);
        expect(l.top_logprobs).toHaveLength(4);
        if (!("temperature" in sampling)) expect(l.top_logprobs[0].id).toBe(l.id);
      }
    });
  });
});
