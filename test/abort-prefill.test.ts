// An AbortSignal ends a long prompt's prefill between its chunks, not after it: the event loop
// runs in between, a session is left as it was before the prompt, and no KV page stays taken.
// With the default prefill chunk too, which holds a whole prompt of these lengths: a prompt
// goes a layer at a time (it went through every layer in one call, the signal unseen).
import * as path from "node:path";
import { loadModel, type Model } from "../lib";
import { fixtureRoot } from "./helpers/fixtures";
import { Random } from "./helpers/reference";

const rng = new Random();
let model: Model;
beforeAll(async () => {
  model = await loadModel(path.join(fixtureRoot, "llama-tiny"), { device: "cpu", kvCacheBytes: 2 ** 24 });
});
afterAll(async () => model?.dispose());

const randomIds = (n: number) => Array.from({ length: n }, () => rng.int(3, 383));

/** A signal aborted by the first callback the event loop runs once the call has started. */
function abortAtFirstTurn(): AbortSignal {
  const controller = new AbortController();
  setImmediate(() => controller.abort());
  return controller.signal;
}

describe(`seed ${rng.seed}`, () => {
  test.each([32, undefined])(
    "a session's prompt (prefill chunk %p): aborted before its prefill ends, the session as it was",
    async (prefillChunk) => {
      const session = model.createSession({ prefillChunk });
      try {
        for await (const _ of session.generate(randomIds(rng.int(5, 20)), { maxNewTokens: 2 }));
        const before = { ...session.stats, pages: model.pool.usedPages };
        const run = async () => {
          for await (const _ of session.generate(randomIds(rng.int(600, 900)), { maxNewTokens: 4, signal: abortAtFirstTurn() }));
        };
        await expect(run()).rejects.toMatchObject({ name: "AbortError" });
        // The prompt never got through: no prompt tokens counted, the cache as before.
        expect({ ...session.stats, pages: model.pool.usedPages }).toMatchObject({
          promptTokens: before.promptTokens,
          contextTokens: before.contextTokens,
          pages: before.pages,
        });
      } finally {
        session.dispose();
      }
    },
  );

  test("an abort at any event-loop turn of a turn: the session holds exactly what its chunks gave", async () => {
    // A short prompt goes in a layer a turn; aborting after each number of turns in one run lands
    // in every gap: before the prompt, between its layers, right after its last one (the first
    // token chosen, not yet given), and between decode steps.
    const prompt = randomIds(rng.int(3, 10));
    const layers = model.config.layers;
    const outcomes = new Set<string>();
    for (let turns = 0; turns <= layers + 4; turns++) {
      const session = model.createSession();
      try {
        const controller = new AbortController();
        const abortAfter = (n: number): void => void (n ? setImmediate(() => abortAfter(n - 1)) : controller.abort());
        const given: number[] = [];
        let error: string | undefined;
        try {
          const stream = session.generate(prompt, { maxNewTokens: 4, stopAtEos: false, signal: controller.signal });
          abortAfter(turns);
          for await (const chunk of stream) given.push(...chunk.tokens);
        } catch (err) {
          error = (err as Error).name;
        }
        const { generatedTokens, contextTokens } = session.stats;
        // The cache holds the prompt and every token given but the last, which the next turn feeds.
        const want = given.length
          ? { generatedTokens: given.length, contextTokens: prompt.length + given.length - 1 }
          : { generatedTokens: 0, contextTokens: 0 };
        expect({ turns, error, generatedTokens, contextTokens }).toEqual({ turns, error, ...want });
        outcomes.add(`${error ?? "done"} after ${given.length}`);
      } finally {
        session.dispose();
      }
    }
    expect(outcomes).toContain("AbortError after 0");
    expect(outcomes).toContain("AbortError after 1");
  });

  test("generateBatch aborted at any event-loop turn: an AbortError unless it had ended, every page back", async () => {
    // One token each: the batch ends with its prompts, so an abort right after the last one's
    // prefill is the last one that may end it.
    const prompts = [randomIds(rng.int(3, 8)), randomIds(rng.int(3, 8))];
    const outcomes = new Set<string>();
    for (let turns = 0; turns <= 2 * model.config.layers + 4; turns++) {
      const controller = new AbortController();
      let abortedAt: "before end" | "after end" | undefined;
      let ended = false;
      const abortAfter = (n: number): void => {
        if (n) {
          setImmediate(() => abortAfter(n - 1));
          return;
        }
        controller.abort();
        abortedAt = ended ? "after end" : "before end";
      };
      const run = model.generateBatch(prompts, { maxNewTokens: 1, signal: controller.signal }).finally(() => {
        ended = true;
      });
      abortAfter(turns);
      const outcome = await run.then(
        () => "resolved",
        (err: Error) => err.name,
      );
      while (!abortedAt) await new Promise((r) => setImmediate(r));
      expect({ turns, outcome, abortedAt }).toEqual({ turns, outcome: abortedAt === "before end" ? "AbortError" : "resolved", abortedAt });
      outcomes.add(outcome);
    }
    expect(outcomes).toEqual(new Set(["AbortError", "resolved"]));
    expect(model.pool.usedPages).toBe(0);
  });

  test.each([32, undefined])(
    "generate and score on the model (prefill chunk %p): aborted mid-prompt, every page back",
    async (prefillChunk) => {
      const pages = model.pool.usedPages;
      const run = async () => {
        for await (const _ of model.generate(randomIds(rng.int(600, 900)), {
          maxNewTokens: 4,
          prefillChunk,
          signal: abortAtFirstTurn(),
        }));
      };
      await expect(run()).rejects.toMatchObject({ name: "AbortError" });
      await expect(
        model.score(randomIds(rng.int(600, 900)), randomIds(3), { prefillChunk, signal: abortAtFirstTurn() }),
      ).rejects.toMatchObject({
        name: "AbortError",
      });
      expect(model.pool.usedPages).toBe(pages);
    },
  );

  test("score: a long continuation is aborted between its prefill steps too", async () => {
    const pages = model.pool.usedPages;
    await expect(
      model.score(randomIds(rng.int(2, 10)), randomIds(rng.int(600, 900)), { prefillChunk: 32, signal: abortAtFirstTurn() }),
    ).rejects.toMatchObject({ name: "AbortError" });
    expect(model.pool.usedPages).toBe(pages);
  });

  test("score: the model disposed mid-prefill ends it with an AbortError that says so", async () => {
    const own = await loadModel(path.join(fixtureRoot, "llama-tiny"), { device: "cpu", kvCacheBytes: 2 ** 24 });
    setImmediate(() => void own.dispose());
    await expect(own.score(randomIds(rng.int(600, 900)), randomIds(3), { prefillChunk: 32 })).rejects.toMatchObject({
      name: "AbortError",
      message: expect.stringMatching(/this model was disposed during scoring/),
    });
  });
});
