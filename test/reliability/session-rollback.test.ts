// A generate that fails part-way through its prompt (here: the KV pool runs out) rolls back:
// every page it reserved is released, the session holds exactly what it held before, and its
// next generate gives what a session that never saw the failed prompt gives.
import * as path from "node:path";
import { kernels, loadModel, Model, PoolExhaustedError, Session, SessionOptions, Tensor } from "../../lib";
import type { SequenceState } from "../../lib/model/decoder";
import { fixtureRoot } from "../helpers/fixtures";

// llama-tiny: 3 layers, 1 KV head of 64 dims; f32 pages of 4 tokens are 2 KiB (K and V).
const pageSize = 4;
const pages = 30;
let model: Model;
beforeAll(async () => {
  model = await loadModel(path.join(fixtureRoot, "llama-tiny"), { device: "cpu", pageSize, kvCacheBytes: pages * 2 * pageSize * 64 * 4 });
});
afterAll(async () => model?.dispose());

/**
 * A prompt whose first layer fits the pool but whose later layers do not: the prefill fails after
 * it has written some layers (a wrapped streaming ring among them), not before.
 */
const tooLong = "The quick brown fox jumps over the lazy dog. ".repeat(3);
const turns = ["Once upon a time", "The quick brown fox"];

async function run(session: ReturnType<Model["createSession"]>, prompt: string) {
  const tokens: number[] = [];
  for await (const chunk of session.generate(prompt, { maxNewTokens: 6, stopAtEos: false })) tokens.push(...chunk.tokens);
  return tokens;
}

/** The keys and values a session's caches hold, layer by layer, in position order. */
function heldKv(session: Session): Float32Array[] {
  const seq = (session as unknown as { seq: SequenceState }).seq;
  return seq.caches.map((cache) => {
    const positions = Array.from({ length: seq.length }, (_, p) => p).filter((p) => {
      try {
        cache.slotOfPosition(p);
        return true;
      } catch {
        return false;
      }
    });
    const slots = Tensor.from(Int32Array.from(positions, (p) => cache.slotOfPosition(p)), [positions.length]);
    const { k, v } = kernels.gatherKv({ kPages: model.pool.kPages, vPages: model.pool.vPages, slots });
    const held = Float32Array.from([...k.toFloat32Array(), ...v.toFloat32Array()]);
    for (const t of [slots, k, v]) t.dispose();
    return held;
  });
}

const sessionKinds: Array<[string, SessionOptions]> = [
  ["full caches", {}],
  ["a streaming layer whose ring has wrapped", { hybrid: { mode: "fixed", lazyLayers: [1], sink: 1, window: 6 } }],
  ["hybrid auto", { hybrid: { mode: "auto", fullLayers: 2, sink: 1, window: 6, lastQueries: 2 } }],
  // The first turn is too short to choose the lazy layers; the choice, made while the second
  // turn decodes, reads queries kept from the first turn, which the failed prompt overwrote.
  ["hybrid auto, choice pending", { hybrid: { mode: "auto", fullLayers: 2, sink: 1, window: 20, lastQueries: 16 } }],
];

test.each(sessionKinds)("a failed later prompt leaves the session as it was (%s)", async (_, options) => {
  const fresh = model.createSession(options);
  const expected = [await run(fresh, turns[0]), await run(fresh, turns[1])];
  fresh.dispose();

  const used = model.pool.usedPages;
  const session = model.createSession(options);
  expect(await run(session, turns[0])).toEqual(expected[0]);
  const before = { used: model.pool.usedPages, stats: session.stats, kv: heldKv(session) };
  model.pool.resetHighWater();
  await expect(run(session, tooLong)).rejects.toThrow(PoolExhaustedError);
  // It failed part-way, with pages of some layers already taken.
  expect(model.pool.highWaterPages).toBeGreaterThan(before.used);
  expect(model.pool.usedPages).toBe(before.used);
  expect(session.stats.contextTokens).toBe(before.stats.contextTokens);
  expect(session.stats.kvBytes).toBe(before.stats.kvBytes);
  expect(heldKv(session)).toEqual(before.kv);
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
  model.pool.resetHighWater();
  await expect(run(session, tooLong)).rejects.toThrow(PoolExhaustedError);
  expect(model.pool.highWaterPages).toBeGreaterThan(used);
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
