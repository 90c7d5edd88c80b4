// The failed-prompt tests of sessions, run by the CPU suite and the GPU suite each on its own
// device: a generate that fails part-way through its prompt (the KV pool runs out) rolls back.
// Every page it reserved is released, the session holds exactly what it held before, and its
// next generate gives what a session that never saw the failed prompt gives.
import * as path from "node:path";
import { type DeviceName, loadModel, type Model, memoryUsage, PoolExhaustedError, type Session, type SessionOptions } from "../../lib";
import { HybridPolicy } from "../../lib/hybrid/policy";
import { fixtureRoot } from "./fixtures";
import { collectGarbage } from "./gc";
import { greedyTokens, heldKv } from "./sessions";

export interface RollbackSuiteOptions {
  device: DeviceName;
  /** Bytes of one cached value on this device: 4 for the CPU's f32, 2 for CUDA's bf16 or f16. */
  valueBytes: number;
  /**
   * Decode steps replayed from a CUDA graph so far. Given, the tests also check that the turns
   * after a failure run through the graphs.
   */
  replayedSteps?: (model: Model) => number;
}

// llama-tiny: 3 layers, 1 KV head of 64 dims. 30 pages of 4 tokens hold the 73-token prompt after
// a 15-token turn in one full layer but not two, and a 73-token first prompt in no two full layers.
const pageSize = 4;
const pages = 30;
const kvHeads = 1,
  headDim = 64;

/**
 * A prompt whose first layer fits the pool but whose later layers do not: the prefill fails after
 * it has written some layers (a wrapped streaming ring among them), not before.
 */
const tooLong = "The quick brown fox jumps over the lazy dog. ".repeat(3);
/**
 * 37 tokens: 10 pages a full layer, a peak of 22-30 pages in every session kind below, more than
 * is free while heldAsidePages of the 30 are taken.
 */
const fitsOnlyAnEmptyPool = "The quick brown fox jumps over the lazy dog. Once upon a time there";
const heldAsidePages = 12;
const turns = ["Once upon a time", "The quick brown fox"];
const shortTurn = "a";
/** Decode steps of a 6-token greedy turn: the first token comes from the prefill. */
const decodeStepsPerTurn = 5;

const sessionKinds: Array<[string, SessionOptions]> = [
  ["full caches", {}],
  ["a streaming layer whose ring has wrapped", { hybrid: { mode: "fixed", lazyLayers: [1], sink: 1, window: 6 } }],
  ["hybrid auto", { hybrid: { mode: "auto", fullLayers: 2, sink: 1, window: 6, lastQueries: 2 } }],
  // The first turn is too short to choose the lazy layers; the choice, made while the second
  // turn decodes, reads queries kept from the first turn, which the failed prompt overwrote.
  ["hybrid auto, choice pending", { hybrid: { mode: "auto", fullLayers: 2, sink: 1, window: 20, lastQueries: 16 } }],
];
/**
 * The hybrid choice still pending through the first two turns (the second's prefill ends at 28
 * tokens, its third step at 31), made on the first step of a short third turn.
 */
const choiceLongPending: SessionOptions = { hybrid: { mode: "auto", fullLayers: 2, sink: 1, window: 29, lastQueries: 16 } };

/** Registers the failed-prompt tests for llama-tiny on `device`. */
export function rollbackTests({ device, valueBytes, replayedSteps }: RollbackSuiteOptions): void {
  // On CUDA the undo's copies of the ring slots a prompt overwrites are device tensors; the
  // device's memory is checked there (a full GC first, which takes the CPU suite too long).
  const onCuda = device !== "cpu";
  let model: Model;
  beforeAll(async () => {
    const kvCacheBytes = pages * 2 * pageSize * kvHeads * headDim * valueBytes;
    model = await loadModel(path.join(fixtureRoot, "llama-tiny"), { device, pageSize, kvCacheBytes });
    if (model.pool.numPages !== pages)
      throw new Error(
        `the pool has ${model.pool.numPages} pages, not ${pages}: is valueBytes ${valueBytes} the KV dtype's size on ${device}?`,
      );
  });
  afterAll(async () => model?.dispose());

  /** Runs `turn` and returns what it gave with the decode steps replayed meanwhile (0 without graphs). */
  async function counted<T>(turn: () => Promise<T>): Promise<{ result: T; replayed: number }> {
    const before = replayedSteps?.(model) ?? 0;
    const result = await turn();
    return { result, replayed: (replayedSteps?.(model) ?? 0) - before };
  }

  test.each(sessionKinds)("a failed later prompt leaves the session as it was (%s)", async (_, options) => {
    const fresh = model.createSession(options);
    const expected = [await greedyTokens(fresh, turns[0]), await greedyTokens(fresh, turns[1])];
    fresh.dispose();

    const used = model.pool.usedPages;
    const session = model.createSession(options);
    expect(await greedyTokens(session, turns[0])).toEqual(expected[0]);
    if (onCuda) await collectGarbage();
    const before = { used: model.pool.usedPages, stats: session.stats, kv: heldKv(model, session), cuda: memoryUsage().cuda };
    model.pool.resetHighWater();
    await expect(greedyTokens(session, tooLong)).rejects.toThrow(PoolExhaustedError);
    // It failed part-way, with pages of some layers already taken.
    expect(model.pool.highWaterPages).toBeGreaterThan(before.used);
    expect(model.pool.usedPages).toBe(before.used);
    if (onCuda) expect(memoryUsage().cuda).toBe(before.cuda);
    expect(session.stats.contextTokens).toBe(before.stats.contextTokens);
    expect(session.stats.kvBytes).toBe(before.stats.kvBytes);
    expect(heldKv(model, session)).toEqual(before.kv);
    const next = await counted(() => greedyTokens(session, turns[1]));
    expect(next.result).toEqual(expected[1]);
    // Every kind has made its hybrid choice by the second step of this turn, so at least its
    // later steps replay the graph, over caches the rollback put back.
    if (replayedSteps) expect(next.replayed).toBeGreaterThan(0);
    session.dispose();
    expect(model.pool.usedPages).toBe(used);
  });

  test.each(sessionKinds)("a failed first prompt leaves a fresh session (%s)", async (_, options) => {
    const fresh = model.createSession(options);
    const expected = await greedyTokens(fresh, turns[1]);
    const expectedHybrid = fresh.stats.hybrid;
    fresh.dispose();

    // A first prompt larger than the whole pool is refused before it starts; this one fits the
    // pool, but not the pages left while others are held, so it fails part-way.
    const used = model.pool.usedPages;
    const heldAside = model.pool.allocate(heldAsidePages);
    const session = model.createSession(options);
    model.pool.resetHighWater();
    await expect(greedyTokens(session, fitsOnlyAnEmptyPool)).rejects.toThrow(/the KV page pool is full/);
    expect(model.pool.highWaterPages).toBeGreaterThan(used + heldAsidePages);
    expect(model.pool.usedPages).toBe(used + heldAsidePages);
    model.pool.release(heldAside);
    expect(session.stats.contextTokens).toBe(0);
    await expect(greedyTokens(session, tooLong)).rejects.toThrow(/the KV page pool is too small: the prompt \(73 tokens\) needs \d+ pages/);
    const next = await counted(() => greedyTokens(session, turns[1]));
    expect(next.result).toEqual(expected);
    expect(session.stats.hybrid).toEqual(expectedHybrid);
    // A choice still pending observes every step's queries, which only the eager steps do;
    // otherwise every step replays the graph.
    if (replayedSteps) expect(next.replayed).toBe(expectedHybrid?.pending ? 0 : decodeStepsPerTurn);
    session.dispose();
    expect(model.pool.usedPages).toBe(used);
  });

  test("a decode step that fails mid-turn leaves the session as if its turn had ended before that step", async () => {
    // While the hybrid choice is pending every step keeps its queries (observeQueries); here that
    // runs out of memory at the last layer on the turn's third step, after every layer appended.
    // The third turn makes the choice, from queries the failed step had begun to overwrite.
    const lastLayer = model.config.layers - 1;
    const observe = HybridPolicy.prototype.observeQueries;
    let steps = 0;
    const failingStep = 3;
    const failing = function (this: HybridPolicy, ...args: Parameters<HybridPolicy["observeQueries"]>) {
      const [, layer, q] = args;
      if (q.shape[0] === 1 && layer === lastLayer && ++steps === failingStep)
        throw new Error("out of memory keeping the queries (injected)");
      observe.apply(this, args);
    };
    const used = model.pool.usedPages;
    const session = model.createSession(choiceLongPending);
    const first = await greedyTokens(session, turns[0]);
    const spy = jest.spyOn(HybridPolicy.prototype, "observeQueries").mockImplementation(failing);
    const yielded: number[] = [];
    try {
      const turn = async () => {
        for await (const chunk of session.generate(turns[1], { maxNewTokens: 6, stopAtEos: false })) yielded.push(...chunk.tokens);
      };
      await expect(turn()).rejects.toThrow(/\(injected\)/);
    } finally {
      spy.mockRestore();
    }
    // The prefill's token and one per step that went through.
    expect(yielded.length).toBe(failingStep);
    // What the session holds and has counted (its rates are timings, which differ).
    const held = (s: Session) => {
      const { decodeTokensPerSecond, prefillTokensPerSecond, ...counts } = s.stats;
      return { counts, kv: heldKv(model, s) };
    };
    const after = held(session);
    const last = await greedyTokens(session, shortTurn);
    expect(session.stats.hybrid?.pending).toBe(false);
    session.dispose();

    // The same turns, the second ended by maxNewTokens where the failure ended it (one session at
    // a time: the pool holds one).
    const reference = model.createSession(choiceLongPending);
    expect(await greedyTokens(reference, turns[0])).toEqual(first);
    expect(await greedyTokens(reference, turns[1], yielded.length)).toEqual(yielded);
    expect(after).toEqual(held(reference));
    expect(last).toEqual(await greedyTokens(reference, shortTurn));
    reference.dispose();
    expect(model.pool.usedPages).toBe(used);
  });

  test("a failed prompt in generateBatch gives every page back and the model keeps working", async () => {
    const used = model.pool.usedPages;
    await expect(model.generateBatch([turns[0], tooLong], { maxNewTokens: 3 })).rejects.toThrow(PoolExhaustedError);
    expect(model.pool.usedPages).toBe(used);
    const fresh = model.createSession();
    const expected = await greedyTokens(fresh, turns[0]);
    fresh.dispose();
    const batch = await counted(() => model.generateBatch([turns[0]], { maxNewTokens: 6, stopAtEos: false }));
    expect(batch.result[0].tokens).toEqual(expected);
    if (replayedSteps) expect(batch.replayed).toBe(decodeStepsPerTurn);
  });
}
