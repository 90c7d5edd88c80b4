// Our engine against Hugging Face transformers on the trained demo model (models/demo), on the
// CPU: the tokenizer's ids, the logits of each prompt's last rows, greedy tokens, and the
// teacher-forced log-probabilities `score` gives a continuation. The reference
// (test/fixtures/demo-reference, made by tools/make_demo_reference.py) runs transformers in
// float32 over the bf16 checkpoint with eager attention; the prompts are short English text and
// two long lib/eval prompts (a passkey and a multi-key haystack).
import * as fs from "node:fs";
import * as path from "node:path";
import { loadModel, type Model } from "../lib";

interface DemoCase {
  prompt: string;
  ids: number[];
  lastLogitsFile: string;
  lastLogitsShape: [number, number];
  greedy: number[];
  greedyMargins: number[];
  continuationIds: number[];
  continuationLogprobs: number[];
}

const demoDir = path.join(__dirname, "..", "models", "demo");
const referenceDir = path.join(__dirname, "fixtures", "demo-reference");
const reference: { transformers: string; cases: DemoCase[] } = JSON.parse(
  fs.readFileSync(path.join(referenceDir, "reference.json"), "utf8"),
);

function lastLogits(c: DemoCase): Float32Array {
  const buf = fs.readFileSync(path.join(referenceDir, c.lastLogitsFile));
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

// Both sides compute in f32 over the same bf16 weights; only summation order differs (~1e-6
// relative per op), which over 8 layers stays well under 1e-4 of the logits' scale, as on the
// tiny fixtures. A log-probability moves by at most twice the largest logit error.
const logitTolerance = (scale: number) => 1e-4 * Math.max(1, scale);

/** The largest |logit| of the reference's last rows: the scale the tolerances are relative to. */
function scaleOf(logits: Float32Array): number {
  return logits.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
}

const scales = reference.cases.map((c) => scaleOf(lastLogits(c)));

let model: Model;
beforeAll(async () => {
  model = await loadModel(demoDir, { device: "cpu", kvCacheBytes: 64 * 2 ** 20 });
});
afterAll(async () => {
  await model?.dispose();
});

describe(`models/demo on the CPU matches transformers ${reference.transformers}`, () => {
  const cases = reference.cases.map((c, i) => [i, c.ids.length] as const);

  test.each(cases)("case %i (%i tokens): the tokenizer's ids", (i) => {
    expect(model.tokenizer.encode(reference.cases[i].prompt)).toEqual(reference.cases[i].ids);
  });

  test.each(cases)("case %i (%i tokens): the logits of the last rows", (i) => {
    const c = reference.cases[i];
    const want = lastLogits(c);
    const [rows, vocab] = c.lastLogitsShape;
    expect(want.length).toBe(rows * vocab);
    const seq = model.decoder.createSequence();
    try {
      const all = model.decoder.prefill(seq, c.ids, { allLogits: true });
      const got = all.subarray(all.length - rows * vocab);
      const worst = want.reduce((m, v, j) => Math.max(m, Math.abs(got[j] - v)), 0);
      expect({ worst, within: worst <= logitTolerance(scales[i]) }).toEqual({ worst, within: true });
    } finally {
      seq.dispose();
    }
  });

  // A greedy step can only be required to match where transformers' top two logits are further
  // apart than both sides' errors together; the tokens up to the first closer step must match.
  test.each(cases)("case %i (%i tokens): greedy tokens", async (i) => {
    const c = reference.cases[i];
    const tokens: number[] = [];
    for await (const chunk of model.generate(c.ids, { maxNewTokens: c.greedy.length, stopAtEos: false })) tokens.push(...chunk.tokens);
    const close = c.greedyMargins.findIndex((m) => m <= 2 * logitTolerance(scales[i]));
    const checked = close < 0 ? c.greedy.length : close;
    expect(tokens.slice(0, checked)).toEqual(c.greedy.slice(0, checked));
  });

  test.each(cases)("case %i (%i tokens): score of the continuation", async (i) => {
    const c = reference.cases[i];
    const got = await model.score(c.ids, c.continuationIds);
    expect(got.logprobs).toHaveLength(c.continuationLogprobs.length);
    const worst = Math.max(...got.logprobs.map((g, j) => Math.abs(g - c.continuationLogprobs[j])));
    expect({ worst, within: worst <= 2 * logitTolerance(scales[i]) }).toEqual({ worst, within: true });
  });
});
