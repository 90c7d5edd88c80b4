// Token ids are checked wherever they enter, never coerced through Int32Array.from (which turns
// "a" into 0, 1.5 into 1 and 2^32 + 5 into 5): a wrong id is an error naming its index and value,
// and nothing was changed by the call.
import * as path from "node:path";
import { loadModel, type Model } from "../../lib";
import { fixtureRoot, readReference } from "../helpers/fixtures";

let model: Model;
beforeAll(async () => {
  model = await loadModel(path.join(fixtureRoot, "llama-tiny"), { device: "cpu", kvCacheBytes: 2 ** 20 });
});
afterAll(async () => model?.dispose());

const vocab = 384;
const bad: Array<[string, unknown, RegExp]> = [
  ["a string", "a", /\[1\] is "a": token ids must be integers in \[0, 383\]/],
  ["a fraction", 1.5, /\[1\] is 1.5: token ids must be integers in \[0, 383\]/],
  ["2^32 + 5", 2 ** 32 + 5, /\[1\] is 4294967301: token ids must be integers in \[0, 383\]/],
  ["a negative id", -1, /\[1\] is -1: token ids must be integers in \[0, 383\]/],
  ["the vocabulary size", vocab, /\[1\] is 384: token ids must be integers in \[0, 383\]/],
  ["NaN", NaN, /\[1\] is NaN: token ids must be integers/],
  ["null", null, /\[1\] is null: token ids must be integers/],
];

test.each(bad)("prefill rejects %s and leaves the sequence untouched", (_, id, message) => {
  const seq = model.decoder.createSequence();
  const used = model.pool.usedPages;
  try {
    expect(() => model.decoder.prefill(seq, [1, id as number, 2])).toThrow(message);
    expect(seq.length).toBe(0);
    expect(seq.caches.every((c) => c.length === 0)).toBe(true);
    expect(model.pool.usedPages).toBe(used);
  } finally {
    seq.dispose();
  }
});

test.each(bad)("a decode step rejects %s before touching a cache, whatever its output", (_, id, message) => {
  const ref = readReference("llama-tiny").cases[0];
  const seqs = [0, 1].map(() => {
    const s = model.decoder.createSequence();
    model.decoder.prefill(s, ref.ids);
    return s;
  });
  const used = model.pool.usedPages;
  try {
    const ids = [3, id as number];
    for (const output of ["logits", "argmax", "none"] as const)
      expect(() => model.decoder.step(seqs, ids, output as "none")).toThrow(message);
    const use = jest.fn();
    expect(() => model.decoder.step(seqs, ids, use)).toThrow(message);
    expect(use).not.toHaveBeenCalled();
    for (const s of seqs) {
      expect(s.length).toBe(ref.ids.length);
      expect(s.caches.every((c) => c.length === ref.ids.length)).toBe(true);
    }
    expect(model.pool.usedPages).toBe(used);
  } finally {
    for (const s of seqs) s.dispose();
  }
});

test("ids that are not an array, or one id per sequence missing, are errors", () => {
  const seq = model.decoder.createSequence();
  try {
    expect(() => model.decoder.prefill(seq, "hello" as never)).toThrow(/prefill: ids must be an array of token ids, got "hello"/);
    expect(() => model.decoder.prefill(seq, 5 as never)).toThrow(/prefill: ids must be an array of token ids, got 5/);
    model.decoder.prefill(seq, [1, 2, 3]);
    expect(() => model.decoder.step([seq], [1, 2], "logits")).toThrow(/one token id per sequence/);
  } finally {
    seq.dispose();
  }
});

test.each([
  ["a string", "a", /decode: ids\[1\] is "a": token ids must be integers in \[0, 2147483647\]/],
  ["a fraction", 1.5, /decode: ids\[1\] is 1.5/],
  ["2^32 + 5", 2 ** 32 + 5, /decode: ids\[1\] is 4294967301/],
  ["a negative id", -1, /decode: ids\[1\] is -1/],
])("tokenizer.decode rejects %s instead of skipping it", (_, id, message) => {
  expect(() => model.tokenizer.decode([5, id as number])).toThrow(message);
  // Ids the model may produce beyond the tokenizer's own vocabulary still decode (to nothing).
  expect(model.tokenizer.decode([5, 383])).toBe(model.tokenizer.decode([5]) + model.tokenizer.decode([383]));
});
