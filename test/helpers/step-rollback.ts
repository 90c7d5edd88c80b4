// The failed-step tests of the decoder, run by the CPU suite and the GPU suite each on its own
// device: a decode step that fails after it reserved its slots (here a hook throwing at a later
// layer, on CUDA also a refused graph launch) puts every cache back to its length and pages and
// every page it took back in the pool, and the steps after it give, bit for bit, what a sequence
// that never saw it gives, through a wrapped streaming ring and across page boundaries.
import * as path from "node:path";
import { type DeviceName, loadModel, type Model } from "../../lib";
import type { Sequence, SequenceHooks } from "../../lib/model/sequence";
import { CudaGraph } from "../../lib/runtime/cuda-graph";
import { fixtureRoot } from "./fixtures";
import { Random } from "./reference";
import { readableKv } from "./sessions";

const rng = new Random();
// llama-tiny has 3 layers; layer 1 is a ring of 6 slots from the start.
const ringLayer = 1;
const ring = { sink: 1, window: 5 };
const pageSize = 4;

/** Registers the failed-step tests for llama-tiny on `device`. */
export function stepRollbackTests(device: DeviceName): void {
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(path.join(fixtureRoot, "llama-tiny"), { device, pageSize, kvCacheBytes: 2 ** 20 });
  });
  afterAll(async () => model?.dispose());
  const randomIds = (n: number) => Array.from({ length: n }, () => rng.int(0, model.config.vocabSize - 1));

  /**
   * Two sequences holding the same prompt, whose length is a whole number of pages (so the next
   * token takes a new page in every full layer) and past the ring's size (so it has wrapped).
   */
  function twoSequences(hooks: { a?: SequenceHooks } = {}): { a: Sequence; b: Sequence; ids: number[] } {
    const ringAtStart = (l: number) => (l === ringLayer ? ring : undefined);
    const a = model.decoder.createSequence({ ringAtStart, ...hooks.a });
    const b = model.decoder.createSequence({ ringAtStart });
    const ids = randomIds(pageSize * rng.int(2, 6));
    // One chunk size for both: a GEMM's bits may depend on how many rows it multiplies.
    const chunkSize = rng.int(3, 16);
    model.decoder.prefill(a, ids, { chunkSize });
    model.decoder.prefill(b, ids, { chunkSize });
    return { a, b, ids };
  }

  /** `fail` makes a step of `a` fail; then a holds what it held, and its next steps are b's. */
  function expectRolledBack(a: Sequence, b: Sequence, fail: (id: number) => void): void {
    const length = a.length;
    const used = model.pool.usedPages;
    const pages = a.caches.map((c) => c.pageTable.length);
    const held = readableKv(model, a);
    expect(a.caches[ringLayer].kind).toBe("streaming");
    expect(length).toBeGreaterThan(ring.sink + ring.window);
    fail(rng.int(0, model.config.vocabSize - 1));
    expect(a.length).toBe(length);
    expect(a.caches.map((c) => c.length)).toEqual(a.caches.map(() => length));
    expect(a.caches.map((c) => c.pageTable.length)).toEqual(pages);
    expect(model.pool.usedPages).toBe(used);
    expect(readableKv(model, a)).toEqual(held);
    // Past the next page boundary and once more around the ring; a's steps in a row, so that a
    // replayed step's table rows carry over from one step to the next as they do in use.
    const ids = randomIds(pageSize + ring.window + 1);
    const stepped = (seq: Sequence) => ids.map((id) => model.decoder.step([seq], [id], "logits"));
    const got = stepped(a),
      want = stepped(b);
    got.forEach((logits, i) => expect({ step: i, seed: rng.seed, logits }).toEqual({ step: i, seed: rng.seed, logits: want[i] }));
  }

  test("a step whose hook fails at a later layer leaves every cache as it was", () => {
    const failAt = rng.int(1, model.config.layers - 1);
    let failing = false;
    const { a, b } = twoSequences({
      a: {
        observesQueries: () => failing,
        observeQueries: (_seq, layer) => {
          if (layer === failAt) throw new Error(`out of memory keeping layer ${layer}'s queries (injected)`);
        },
      },
    });
    try {
      expectRolledBack(a, b, (id) => {
        failing = true;
        try {
          expect(() => model.decoder.step([a], [id], "argmax")).toThrow(/\(injected\)/);
        } finally {
          failing = false;
        }
      });
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  if (device !== "cpu")
    test("a replayed step whose launch is refused leaves every cache as it was", () => {
      const { a, b } = twoSequences();
      try {
        // The step before records the graph of this batch size, so the failing one replays it.
        const id = rng.int(0, model.config.vocabSize - 1);
        model.decoder.step([a], [id], "none");
        model.decoder.step([b], [id], "none");
        const replayed = model.decoder.stats.graphSteps;
        expectRolledBack(a, b, (next) => {
          const launch = jest.spyOn(CudaGraph.prototype, "launch").mockImplementationOnce(() => {
            throw new Error("graph launch refused (injected)");
          });
          try {
            expect(() => model.decoder.step([a], [next], "argmax")).toThrow(/\(injected\)/);
          } finally {
            launch.mockRestore();
          }
        });
        expect(model.decoder.stats.graphSteps).toBeGreaterThan(replayed);
      } finally {
        a.dispose();
        b.dispose();
      }
    });
}
