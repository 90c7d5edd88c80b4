// A prompt that fails part-way is undone (test/helpers/session-rollback.ts); if the undo fails
// too, the caller gets the prompt's own error, and the sequence (or session) refuses every later
// use, saying both what failed and what to do, until it is disposed, which gives every page back.
import * as path from "node:path";
import { loadModel, type Model, PoolExhaustedError, type Session } from "../../lib";
import { HybridPolicy } from "../../lib/hybrid/policy";
import { fixtureRoot } from "../helpers/fixtures";
import { Random } from "../helpers/reference";

const rng = new Random();
const pageSize = 4;
const pages = 30;

let model: Model;
beforeAll(async () => {
  model = await loadModel(path.join(fixtureRoot, "llama-tiny"), { device: "cpu", pageSize, kvCacheBytes: pages * 2 * pageSize * 64 * 4 });
});
afterAll(async () => model?.dispose());
const randomIds = (n: number) => Array.from({ length: n }, () => rng.int(0, model.config.vocabSize - 1));
const failingUndo = () => ({
  restore: () => {
    throw new Error("putting the hooks back failed (injected)");
  },
  dispose: () => {},
});

/** A session whose undo failed refuses every generate, saying why, and gives every page back when disposed. */
async function expectRefusedUntilDisposed(session: Session, usedBefore: number): Promise<void> {
  await expect(session.generate(randomIds(3), { maxNewTokens: 2 }).next()).rejects.toThrow(
    /could not be put back .*putting the hooks back failed \(injected\).*dispose the session and start a new one/,
  );
  session.dispose();
  expect(model.pool.usedPages).toBe(usedBefore);
  // Its stats said why they could not be read; disposed, it kept none.
  expect(() => session.stats).toThrow(/this session was disposed while damaged, so it kept no stats/);
}

test("a sequence: the prompt's own error, then every use refused until dispose()", () => {
  const used = model.pool.usedPages;
  const seq = model.decoder.createSequence({
    savePoint: failingUndo,
    layerDone: (_seq, layer) => {
      if (layer === 1) throw new Error("the prompt failed at layer 1 (injected)");
    },
  });
  expect(() => model.decoder.prefill(seq, randomIds(rng.int(5, 20)))).toThrow("the prompt failed at layer 1 (injected)");
  const refused =
    /a prompt failed \(the prompt failed at layer 1 \(injected\)\) and the context could not be put back .*putting the hooks back failed \(injected\).*dispose this sequence/;
  expect(() => model.decoder.step([seq], [1], "none")).toThrow(refused);
  expect(() => model.decoder.prefill(seq, [1])).toThrow(refused);
  expect(() => model.decoder.startPrefill(seq, [1])).toThrow(refused);
  seq.dispose();
  expect(model.pool.usedPages).toBe(used);
});

test("a session: the pool's PoolExhaustedError, then every generate refused until dispose()", async () => {
  // A prompt larger than the whole pool is refused before it starts: this one (36 tokens, 9 pages
  // a full layer, 27 at once) fits the 30 pages, but not the 18 left while 12 are held aside.
  const heldAside = model.pool.allocate(12);
  const used = model.pool.usedPages;
  const session = model.createSession({ hybrid: { mode: "auto", fullLayers: 2, sink: 1, window: 6, lastQueries: 2 } });
  const savePoint = jest.spyOn(HybridPolicy.prototype, "savePoint").mockImplementation(failingUndo);
  try {
    await expect(session.generate(randomIds(36), { maxNewTokens: 2 }).next()).rejects.toThrow(PoolExhaustedError);
  } finally {
    savePoint.mockRestore();
  }
  await expectRefusedUntilDisposed(session, used);
  model.pool.release(heldAside);
});

test("a session's prompt aborted part-way whose undo fails: the abort's AbortError, then every generate refused", async () => {
  const used = model.pool.usedPages;
  const session = model.createSession({ prefillChunk: 4, hybrid: { mode: "auto", fullLayers: 2, sink: 1, window: 6, lastQueries: 2 } });
  const savePoint = jest.spyOn(HybridPolicy.prototype, "savePoint").mockImplementation(failingUndo);
  const controller = new AbortController();
  setImmediate(() => controller.abort());
  try {
    await expect(session.generate(randomIds(rng.int(12, 20)), { maxNewTokens: 2, signal: controller.signal }).next()).rejects.toMatchObject(
      {
        name: "AbortError",
      },
    );
  } finally {
    savePoint.mockRestore();
  }
  await expectRefusedUntilDisposed(session, used);
});
