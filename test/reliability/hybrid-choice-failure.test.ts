// A hybrid choice made during a decode step (auto mode, a short first prompt) that fails part-way
// leaves the layers it did not reach full, and no later prompt measures or cuts them: a later
// prompt that fails part-way is then undone whole (the original PoolExhaustedError, the session
// as it was), where before it could cut a layer holding the whole context, fail to put it back,
// and leave the caches at different lengths.
import * as path from "node:path";
import { loadModel, type Model, PoolExhaustedError, type Session, type SessionOptions } from "../../lib";
import { FullCache } from "../../lib/cache/layer-cache";
import type { GenerationSequence } from "../../lib/generate/sequence";
import { HybridPolicy } from "../../lib/hybrid/policy";
import { Sequence } from "../../lib/model/sequence";
import { fixtureRoot } from "../helpers/fixtures";

const pageSize = 4;
// Every layer lazy, so that the choice cuts layer 0 first; the ring is 9 tokens.
const options: SessionOptions = { hybrid: { mode: "auto", fullLayers: 0, sink: 1, window: 8, lastQueries: 2 }, prefillChunk: 4 };

let model: Model;
beforeAll(async () => {
  model = await loadModel(path.join(fixtureRoot, "llama-tiny"), { device: "cpu", pageSize, kvCacheBytes: 200 * 2 * pageSize * 64 * 4 });
});
afterAll(async () => model?.dispose());

async function tokens(session: Session, prompt: string, maxNewTokens: number): Promise<number[]> {
  const out: number[] = [];
  for await (const chunk of session.generate(prompt, { maxNewTokens, stopAtEos: false })) out.push(...chunk.tokens);
  return out;
}

/** Each layer's cache kind and length, and the sequence's length. */
function caches(session: Session): { length: number; layers: string[] } {
  const { seq } = (session as unknown as { sequence: GenerationSequence }).sequence;
  return { length: seq.length, layers: seq.caches.map((c) => `${c.kind}:${c.length}`) };
}

/** A session whose choice, made on a decode step of its first turn, fails at its first cut. */
async function failedChoice(): Promise<Session> {
  const session = model.createSession(options);
  const cut = jest.spyOn(FullCache.prototype, "cutToStreaming").mockImplementationOnce(() => {
    throw new Error("out of memory cutting the cache (injected)");
  });
  try {
    await expect(tokens(session, "Once upon", 16)).rejects.toThrow(/\(injected\)/);
  } finally {
    cut.mockRestore();
  }
  const held = caches(session);
  expect(held.layers).toEqual(held.layers.map(() => `full:${held.length}`));
  expect(session.stats.hybrid).toMatchObject({ pending: false, lazyLayers: [] });
  return session;
}

test("a choice that failed part-way leaves its other layers full, and a later failed prompt is undone whole", async () => {
  const used = model.pool.usedPages;
  const session = await failedChoice();
  const before = { caches: caches(session), hybrid: session.stats.hybrid, used: model.pool.usedPages };

  // The next prompt runs out of pages once layer 1 is done (another user of the pool takes them).
  const layerDone = HybridPolicy.prototype.layerDone;
  const taken: number[] = [];
  const spy = jest.spyOn(HybridPolicy.prototype, "layerDone").mockImplementation(function (this: HybridPolicy, ...args) {
    layerDone.apply(this, args);
    if (args[1] === 1 && taken.length === 0) taken.push(...model.pool.allocate(model.pool.freePages));
  });
  try {
    await expect(tokens(session, " the quick brown fox jumps over the lazy dog again and again", 4)).rejects.toThrow(PoolExhaustedError);
  } finally {
    spy.mockRestore();
    model.pool.release(taken);
  }
  expect({ caches: caches(session), hybrid: session.stats.hybrid, used: model.pool.usedPages }).toEqual(before);

  // It goes on as a session that never saw the failed prompt.
  const next = await tokens(session, " hello", 3);
  const reference = await failedChoice();
  expect(await tokens(reference, " hello", 3)).toEqual(next);
  session.dispose();
  reference.dispose();
  expect(model.pool.usedPages).toBe(used);
});

test("a NaN ratio at the deferred choice is refused before anything changes: the choice stays pending", async () => {
  const session = model.createSession(options);
  const lazyRatio = jest
    .spyOn(Sequence.prototype, "lazyRatio")
    .mockImplementation((layer) =>
      Float32Array.from({ length: model.config.heads }, (_, h) => (layer === 2 && h === 0 ? Number.NaN : 0.5)),
    );
  try {
    await expect(tokens(session, "Once upon", 16)).rejects.toThrow(/lazy ratio of layer 2 is NaN/);
  } finally {
    lazyRatio.mockRestore();
  }
  const { hybrid } = session.stats;
  expect(hybrid).toMatchObject({ pending: true, lazyLayers: [] });
  expect(hybrid.ratios).toEqual(hybrid.ratios.map(() => undefined));
  const held = caches(session);
  expect(held.layers).toEqual(held.layers.map(() => `full:${held.length}`));
  // The next step makes the choice.
  await tokens(session, " and", 2);
  expect(session.stats.hybrid).toMatchObject({ pending: false, lazyLayers: [0, 1, 2] });
  session.dispose();
});
