// A generate that fails part-way through its prompt (here: the KV pool runs out) rolls back:
// every page it reserved is released, the session holds exactly what it held before, and its
// next generate gives what a session that never saw the failed prompt gives.
import * as path from "node:path";
import { loadModel, Model, PoolExhaustedError, SessionOptions } from "../../lib";
import { fixtureRoot } from "../helpers/fixtures";

// llama-tiny: 3 layers, 1 KV head of 64 dims; f32 pages of 4 tokens are 2 KiB (K and V).
const pageSize = 4;
const pages = 30;
let model: Model;
beforeAll(async () => {
  model = await loadModel(path.join(fixtureRoot, "llama-tiny"), { device: "cpu", pageSize, kvCacheBytes: pages * 2 * pageSize * 64 * 4 });
});
afterAll(async () => model?.dispose());

/** A prompt long enough to need more pages than the pool has. */
const tooLong = "The quick brown fox jumps over the lazy dog. ".repeat(6);
const turns = ["Once upon a time", "The quick brown fox"];

async function run(session: ReturnType<Model["createSession"]>, prompt: string) {
  const tokens: number[] = [];
  for await (const chunk of session.generate(prompt, { maxNewTokens: 6, stopAtEos: false })) tokens.push(...chunk.tokens);
  return tokens;
}

const sessionKinds: Array<[string, SessionOptions]> = [
  ["full caches", {}],
  ["a streaming layer whose ring has wrapped", { hybrid: { mode: "fixed", lazyLayers: [1], sink: 1, window: 6 } }],
  ["hybrid auto", { hybrid: { mode: "auto", fullLayers: 2, sink: 1, window: 6, lastQueries: 2 } }],
];

test.each(sessionKinds)("a failed later prompt leaves the session as it was (%s)", async (_, options) => {
  expect(model.tokenizer.encode(tooLong).length * 3).toBeGreaterThan(pages * pageSize);
  const fresh = model.createSession(options);
  const expected = [await run(fresh, turns[0]), await run(fresh, turns[1])];
  fresh.dispose();

  const used = model.pool.usedPages;
  const session = model.createSession(options);
  expect(await run(session, turns[0])).toEqual(expected[0]);
  const before = { used: model.pool.usedPages, stats: session.stats };
  await expect(run(session, tooLong)).rejects.toThrow(PoolExhaustedError);
  expect(model.pool.usedPages).toBe(before.used);
  expect(session.stats.contextTokens).toBe(before.stats.contextTokens);
  expect(session.stats.kvBytes).toBe(before.stats.kvBytes);
  expect(await run(session, turns[1])).toEqual(expected[1]);
  session.dispose();
  expect(model.pool.usedPages).toBe(used);
});

test.each(sessionKinds)("a failed first prompt leaves a fresh session (%s)", async (_, options) => {
  const fresh = model.createSession(options);
  const expected = await run(fresh, turns[1]);
  const expectedHybrid = fresh.stats.hybrid;
  fresh.dispose();

  const used = model.pool.usedPages;
  const session = model.createSession(options);
  await expect(run(session, tooLong)).rejects.toThrow(PoolExhaustedError);
  expect(model.pool.usedPages).toBe(used);
  expect(session.stats.contextTokens).toBe(0);
  expect(await run(session, turns[1])).toEqual(expected);
  expect(session.stats.hybrid).toEqual(expectedHybrid);
  session.dispose();
  expect(model.pool.usedPages).toBe(used);
});

test("a failed prompt in generateBatch gives every page back and the model keeps working", async () => {
  const used = model.pool.usedPages;
  await expect(model.generateBatch([turns[0], tooLong], { maxNewTokens: 3 })).rejects.toThrow(PoolExhaustedError);
  expect(model.pool.usedPages).toBe(used);
  const fresh = model.createSession();
  const expected = await run(fresh, turns[0]);
  fresh.dispose();
  const [result] = await model.generateBatch([turns[0]], { maxNewTokens: 6, stopAtEos: false });
  expect(result.tokens).toEqual(expected);
});
