// A session owns its in-flight work: disposing it (or its model) while generate is running stops
// the generation at its next step with a clear error, decodes nothing more, and every KV page
// and tensor is back. The same holds for a model disposed during generateBatch.
import * as path from "node:path";
import { loadModel, type Model, memoryUsage, type SessionStats } from "../../lib";
import { fixtureRoot } from "../helpers/fixtures";
import { collectGarbage } from "../helpers/gc";

const dir = path.join(fixtureRoot, "llama-tiny");
const load = () => loadModel(dir, { device: "cpu", kvCacheBytes: 2 ** 20, pageSize: 4 });

describe("session.dispose() during generate", () => {
  let model: Model;
  beforeAll(async () => {
    model = await load();
  });
  afterAll(async () => model?.dispose());

  test.each([
    ["full caches", {}],
    ["hybrid auto, choice pending", { hybrid: { mode: "auto" as const, sink: 2, window: 64, lastQueries: 2 } }],
    ["hybrid fixed", { hybrid: { mode: "fixed" as const, lazyLayers: [1], sink: 1, window: 3 } }],
  ])("stops the generation, decodes no more and gives every page back (%s)", async (_, sessionOptions) => {
    await collectGarbage();
    const used = model.pool.usedPages,
      bytes = memoryUsage().cpu;
    const session = model.createSession(sessionOptions);
    const step = jest.spyOn(model.decoder, "step");
    const chunks: string[] = [];
    let stepsAtDispose = -1;
    let statsAtDispose: SessionStats | undefined;
    try {
      await expect(async () => {
        for await (const chunk of session.generate("Once upon a time", { maxNewTokens: 40, stopAtEos: false })) {
          chunks.push(chunk.text);
          if (chunks.length === 3) {
            statsAtDispose = session.stats;
            session.dispose();
            stepsAtDispose = step.mock.calls.length;
          }
        }
      }).rejects.toThrow(/this session was disposed during generation/);
      expect(step.mock.calls.length).toBe(stepsAtDispose);
    } finally {
      step.mockRestore();
    }
    expect(chunks.length).toBe(3);
    expect(model.pool.usedPages).toBe(used);
    expect(memoryUsage().cpu).toBe(bytes);
    // The stats as they were, for a finally to log: each read a fresh copy.
    expect(statsAtDispose!.generatedTokens).toBe(3);
    expect(session.stats).toEqual(statsAtDispose);
    expect(session.stats.hybrid).not.toBe(session.stats.hybrid);
    await expect(session.generate("more").next()).rejects.toThrow(/this session was disposed/);
  });

  test("the error is an AbortError, as for an aborted signal", async () => {
    const session = model.createSession();
    const it = session.generate("Once upon a time", { maxNewTokens: 10 });
    await it.next();
    session.dispose();
    const err = await it.next().then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.name).toBe("AbortError");
  });

  test("disposing between the prompt's prefill and the first token ends the generator too", async () => {
    const used = model.pool.usedPages;
    const session = model.createSession();
    const it = session.generate("The quick brown fox", { maxNewTokens: 10, stopAtEos: false });
    const first = await it.next();
    expect(first.done).toBe(false);
    session.dispose();
    await expect(it.next()).rejects.toThrow(/disposed during generation/);
    // The generator is finished for good.
    expect(await it.next()).toEqual({ done: true, value: undefined });
    expect(model.pool.usedPages).toBe(used);
  });
});

test("model.dispose() during a session's generate stops it with a clear error", async () => {
  const model = await load();
  const session = model.createSession();
  const chunks: string[] = [];
  await expect(async () => {
    for await (const chunk of session.generate("Once upon a time", { maxNewTokens: 40, stopAtEos: false })) {
      chunks.push(chunk.text);
      if (chunks.length === 2) await model.dispose();
    }
  }).rejects.toThrow(/this session was disposed during generation/);
  expect(chunks.length).toBe(2);
  expect(session.stats).toMatchObject({ generatedTokens: 2, contextTokens: expect.any(Number) });
});

test("model.dispose() during generateBatch rejects it with a clear error and decodes no more", async () => {
  await collectGarbage();
  const bytes = memoryUsage().cpu;
  const model = await load();
  const decode = jest.spyOn(model.decoder, "step");
  const batch = model.generateBatch(["Once upon a time", "The quick brown fox"], { maxNewTokens: 40, stopAtEos: false });
  // Let a few decode steps run, then pull the model out from under the batch.
  while (decode.mock.calls.length < 3) await new Promise((r) => setImmediate(r));
  await model.dispose();
  const steps = decode.mock.calls.length;
  await expect(batch).rejects.toThrow(/this model was disposed during generation/);
  expect(decode.mock.calls.length).toBe(steps);
  await collectGarbage();
  expect(memoryUsage().cpu).toBe(bytes);
});
