// Sessions own their in-flight work on CUDA too: a prompt or a decode step that fails part-way
// rolls back every cache and the hybrid policy (the CPU suite's tests, run on cuda:0; a refused
// graph launch besides), and disposing a session or its model during generate stops the
// generation with an AbortError and gives back every page and every byte of device memory. The decode steps around both replay the CUDA decode graph
// (lib/model/decode-graph.ts), whose recorded buffers and index rows must survive them.
import * as path from "node:path";
import { loadModel, type Model, memoryUsage, type SessionOptions } from "../../lib";
import { fixtureRoot } from "../helpers/fixtures";
import { collectGarbage } from "../helpers/gc";
import { describeWithCuda } from "../helpers/gpu";
import { launchAheadTests } from "../helpers/launch-ahead";
import { rollbackTests } from "../helpers/session-rollback";
import { greedyTokens } from "../helpers/sessions";
import { stepRollbackTests } from "../helpers/step-rollback";

const describeGpu = describeWithCuda("session-reliability");
const dir = path.join(fixtureRoot, "llama-tiny");
const load = () => loadModel(dir, { device: "cuda:0", kvCacheBytes: 2 ** 20, pageSize: 4 });
const replayedSteps = (model: Model) => model.decoder.stats.graphSteps;

describeGpu("a failed prompt on CUDA leaves the session as it was", () => {
  // llama-tiny's cache is bf16 on CUDA.
  rollbackTests({ device: "cuda:0", valueBytes: 2, replayedSteps });
});

describeGpu("a failed decode step on CUDA leaves every cache as it was", () => {
  stepRollbackTests("cuda:0");
});

describeGpu("greedy decode steps launched ahead on CUDA", () => {
  launchAheadTests("cuda:0", "replayed");
});

/** Tokens generated before the session is disposed: past a few 4-token pages and a wrapped ring. */
const chunksBeforeDispose = 20;
const prompt = "Once upon a time";
const maxNewTokens = 40;

describeGpu("session.dispose() during generate on CUDA", () => {
  let model: Model;
  beforeAll(async () => {
    model = await load();
  });
  afterAll(async () => model?.dispose());

  // `eagerSteps`: decode steps before the dispose that observe their queries (a pending hybrid
  // choice), which run op by op; every other step replays the graph. The prompt has 10 tokens:
  // the third session chooses its lazy layers after step 4 (14 tokens > sink + window), the
  // fourth never within these tokens.
  test.each<[string, SessionOptions, number]>([
    ["full caches", {}, 0],
    ["hybrid fixed, ring wrapped", { hybrid: { mode: "fixed", lazyLayers: [1], sink: 1, window: 3 } }, 0],
    ["hybrid auto, choice made during the generation", { hybrid: { mode: "auto", fullLayers: 2, sink: 1, window: 12, lastQueries: 2 } }, 4],
    ["hybrid auto, choice pending", { hybrid: { mode: "auto", sink: 2, window: 64, lastQueries: 2 } }, chunksBeforeDispose - 1],
  ])(
    "stops the generation, gives back every page and byte, and the model generates as before (%s)",
    async (_, sessionOptions, eagerSteps) => {
      // An undisturbed generation first: the tokens to compare with, and the decode graph recorded
      // (its buffers stay with the model until it is disposed, so they are part of the baseline).
      const undisturbed = model.createSession(sessionOptions);
      const expected = await greedyTokens(undisturbed, prompt, maxNewTokens);
      undisturbed.dispose();
      expect(expected).toHaveLength(maxNewTokens);

      await collectGarbage();
      const used = model.pool.usedPages,
        bytes = memoryUsage().cuda,
        replayedBefore = replayedSteps(model);
      const observingBefore = model.decoder.stats.eagerSteps["observing queries"] ?? 0;
      const session = model.createSession(sessionOptions);
      const step = jest.spyOn(model.decoder, "step"),
        launch = jest.spyOn(model.decoder, "launchGreedy");
      const launched = () => step.mock.calls.length + launch.mock.calls.length;
      const tokens: number[] = [];
      let stepsAtDispose = -1,
        steps = -1;
      let error: Error | undefined;
      try {
        for await (const chunk of session.generate(prompt, { maxNewTokens, stopAtEos: false })) {
          tokens.push(...chunk.tokens);
          if (tokens.length === chunksBeforeDispose) {
            session.dispose();
            stepsAtDispose = launched();
          }
        }
      } catch (err) {
        error = err as Error;
      } finally {
        steps = launched();
        step.mockRestore();
        launch.mockRestore();
      }
      expect(error?.name).toBe("AbortError");
      expect(error?.message).toMatch(/this session was disposed during generation/);
      // The first token comes from the prefill, each later one from a decode step; replayed
      // steps are launched one ahead, so one more had been launched when the session was
      // disposed; none after.
      const ahead = eagerSteps < chunksBeforeDispose - 1 ? 1 : 0;
      expect(stepsAtDispose).toBe(chunksBeforeDispose - 1 + ahead);
      expect(steps).toBe(stepsAtDispose);
      expect(tokens).toEqual(expected.slice(0, chunksBeforeDispose));
      expect(replayedSteps(model) - replayedBefore).toBe(stepsAtDispose - eagerSteps);
      expect((model.decoder.stats.eagerSteps["observing queries"] ?? 0) - observingBefore).toBe(eagerSteps);
      expect(model.decoder.stats.unavailable).toBeUndefined();
      expect(model.pool.usedPages).toBe(used);
      expect(memoryUsage().cuda).toBe(bytes);

      const again = model.createSession(sessionOptions);
      expect(await greedyTokens(again, prompt, maxNewTokens)).toEqual(expected);
      again.dispose();
      expect(model.pool.usedPages).toBe(used);
      expect(memoryUsage().cuda).toBe(bytes);
    },
  );
});

describeGpu("model.dispose() during generate on CUDA", () => {
  test("stops the generation with an AbortError and frees all its device memory, decode graphs included", async () => {
    await collectGarbage();
    const bytes = memoryUsage().cuda;
    const model = await load();
    const session = model.createSession();
    const tokens: number[] = [];
    let error: Error | undefined;
    try {
      for await (const chunk of session.generate(prompt, { maxNewTokens, stopAtEos: false })) {
        tokens.push(...chunk.tokens);
        if (tokens.length === chunksBeforeDispose) await model.dispose();
      }
    } catch (err) {
      error = err as Error;
    } finally {
      await model.dispose(); // a no-op when the loop did it, as it should have
    }
    expect(error?.name).toBe("AbortError");
    expect(error?.message).toMatch(/this session was disposed during generation/);
    expect(tokens).toHaveLength(chunksBeforeDispose);
    // The steps before the dispose (and the one launched ahead of it) were replayed, so the
    // graph's buffers existed and are gone now.
    expect(model.decoder.stats.graphSteps).toBe(chunksBeforeDispose);
    expect(memoryUsage().cuda).toBe(bytes);
  });
});
