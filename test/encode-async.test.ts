// Long text is encoded on the tokenizer's worker thread (Tokenizer.encodeAsync), so the event loop
// keeps running: the ids are encode()'s, a timer ticks meanwhile, a disposed tokenizer fails what
// it was encoding and refuses more, and generation, scoring and batches take their long prompts
// through it (a model disposed meanwhile ends them with an AbortError).
import * as path from "node:path";
import { loadModel, type Model, Tokenizer } from "../lib";
import { brownCorpus } from "../lib/eval/corpus";
import { runNode } from "./helpers/child";
import { fixtureModels, fixtureRoot } from "./helpers/fixtures";
import { Random } from "./helpers/reference";

const rng = new Random();
const words = brownCorpus()
  .filler.flat()
  .flatMap((s) => s.split(" "));

/** Random words with some punctuation, digits and non-ASCII text, at least `chars` characters long. */
function randomText(chars: number): string {
  const parts: string[] = [];
  let length = 0;
  while (length < chars) {
    const part = rng.next() < 0.05 ? rng.pick([", ", ". ", "\n", " 1987 ", " é ", " \u2603 ", " \u{1D400} "]) : ` ${rng.pick(words)}`;
    parts.push(part);
    length += part.length;
  }
  return parts.join("");
}

describe(`seed ${rng.seed}`, () => {
  test.each(fixtureModels)("%s: encodeAsync gives encode's ids for long and short texts, with and without special tokens", async (name) => {
    const tok = Tokenizer.fromDirectory(path.join(fixtureRoot, name));
    try {
      for (const chars of [rng.int(1, 200), rng.int(9000, 40000)])
        for (const addSpecialTokens of [true, false]) {
          const text = randomText(chars);
          expect(await tok.encodeAsync(text, { addSpecialTokens })).toEqual(tok.encode(text, { addSpecialTokens }));
        }
      // Requests in flight together are answered each with its own ids.
      const texts = Array.from({ length: 4 }, () => randomText(rng.int(9000, 20000)));
      expect(await Promise.all(texts.map((t) => tok.encodeAsync(t)))).toEqual(texts.map((t) => tok.encode(t)));
    } finally {
      await tok.dispose();
    }
  });

  test("the event loop runs while a long text is encoded", async () => {
    const tok = Tokenizer.fromDirectory(path.join(fixtureRoot, "llama-tiny"));
    const text = randomText(rng.int(150_000, 200_000));
    const encode = jest.spyOn(tok, "encode");
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    try {
      const ids = await tok.encodeAsync(text);
      expect(ticks).toBeGreaterThan(0);
      expect(encode).not.toHaveBeenCalled();
      encode.mockRestore();
      expect(ids).toEqual(tok.encode(text));
    } finally {
      clearInterval(timer);
      await tok.dispose();
    }
  });

  test("dispose fails the texts being encoded and refuses more; encode still works", async () => {
    const tok = Tokenizer.fromDirectory(path.join(fixtureRoot, "qwen2-tiny"));
    const pending = expect(tok.encodeAsync(randomText(rng.int(20000, 40000)))).rejects.toThrow(
      "encodeAsync: the tokenizer was disposed (with its model) before the text was encoded",
    );
    await tok.dispose();
    await pending;
    for (const chars of [5, 20000]) await expect(tok.encodeAsync(randomText(chars))).rejects.toThrow(/this tokenizer was disposed/);
    expect(tok.decode(tok.encode("Hello world", { addSpecialTokens: false }))).toBe("Hello world");
    await tok.dispose(); // twice is fine
    await expect(tok.encodeAsync(42 as unknown as string)).rejects.toThrow("encodeAsync: text must be a string, got 42");
  });

  test("where no worker thread may start (Node's permission model), long texts are encoded inline", () => {
    const flag = process.allowedNodeEnvironmentFlags.has("--permission") ? "--permission" : "--experimental-permission";
    const script = [
      `const { Tokenizer } = require(${JSON.stringify(path.join(__dirname, "..", "dist", "lib", "checkpoint", "tokenizer.js"))});`,
      `const tok = Tokenizer.fromDirectory(${JSON.stringify(path.join(fixtureRoot, "mistral-tiny"))});`,
      `const text = ${JSON.stringify(randomText(rng.int(9000, 20000)))};`,
      "(async () => {",
      "  const ids = [await tok.encodeAsync(text), await tok.encodeAsync(text)];",
      "  console.log(JSON.stringify(ids.map((a) => JSON.stringify(a) === JSON.stringify(tok.encode(text)))));",
      "})().catch((err) => { console.log(JSON.stringify(err.message)); });",
    ].join("\n");
    const r = runNode([flag, "--allow-fs-read=*", "-e", script]);
    expect(r.stdout.trim()).toBe("[true,true]");
  });

  describe("the model's long prompts", () => {
    let model: Model;
    beforeEach(async () => {
      model = await loadModel(path.join(fixtureRoot, "llama-tiny"), { device: "cpu", kvCacheBytes: 2 ** 22 });
    });
    afterEach(async () => model.dispose());

    test("generate, generateBatch and score encode a long prompt off the event loop, to as many tokens as encode gives", async () => {
      const text = randomText(rng.int(9000, 12000));
      const tokens = model.tokenizer.encode(text).length;
      const asContinuation = model.tokenizer.encode(text, { addSpecialTokens: false }).length;
      const encode = jest.spyOn(model.tokenizer, "encode");
      // More tokens than llama-tiny's 4096 positions: each call fails after encoding, naming the count.
      const tooMany = new RegExp(`has ${tokens} tokens: more than maxContext 4096`);
      await expect(model.generate(text, { maxNewTokens: 1 }).next()).rejects.toThrow(tooMany);
      await expect(model.generateBatch(["a", text], { maxNewTokens: 1 })).rejects.toThrow(tooMany);
      await expect(model.score(text, " b")).rejects.toThrow(tooMany);
      await expect(model.score("a", text)).rejects.toThrow(
        new RegExp(
          `the prompt and the continuation have 2 \\+ ${asContinuation} tokens: more than maxContext 4096\\. Shorten them or ask for a larger maxContext \\(an option of score\\)`,
        ),
      );
      expect(encode.mock.calls.every(([t]) => t.length < 9000)).toBe(true);
    });

    test("a model disposed while a prompt is encoded ends the call with an AbortError", async () => {
      const calls = [
        (m: Model, text: string) => m.generate(text, { maxNewTokens: 1 }).next(),
        (m: Model, text: string) => m.generateBatch([text]),
        (m: Model, text: string) => m.score(text, " b"),
        (m: Model, text: string) => m.createSession().generate(text).next(),
      ];
      for (const call of calls) {
        const other = await loadModel(path.join(fixtureRoot, "llama-tiny"), { device: "cpu", kvCacheBytes: 2 ** 22 });
        const ended = expect(call(other, randomText(rng.int(60000, 80000)))).rejects.toMatchObject({
          name: "AbortError",
          message: expect.stringMatching(/was disposed during (generation|scoring)/),
        });
        await new Promise((r) => setTimeout(r, rng.int(0, 20)));
        await other.dispose();
        await ended;
      }
    });

    test("an abort while a prompt is encoded ends the call at once with the signal's reason, not the prompt's own error", async () => {
      const session = model.createSession();
      const calls = [
        (text: string, signal: AbortSignal) => model.generate(text, { maxNewTokens: 1, signal }).next(),
        (text: string, signal: AbortSignal) => session.generate(text, { maxNewTokens: 1, signal }).next(),
        (text: string, signal: AbortSignal) => model.generateBatch([text], { signal }),
        (text: string, signal: AbortSignal) => model.score(text, " b", { signal }),
      ];
      for (const call of calls) {
        // Too long for the model: once encoded, the prompt would be refused for its length.
        const controller = new AbortController();
        const ended = expect(call(randomText(rng.int(60000, 80000)), controller.signal)).rejects.toMatchObject({ name: "AbortError" });
        controller.abort();
        await ended;
      }
      // The session took nothing in and is free for its next turn.
      expect(session.stats.contextTokens).toBe(0);
      const { done } = await session.generate("hi", { maxNewTokens: 1 }).next();
      expect(done).toBe(false);
      session.dispose();
    });

    test("an abort while a batch's or scoring's prompts are encoded stops before the next prompt", async () => {
      // Short enough to fit the model: the loop looks at the signal between prompts however they are encoded.
      const texts = Array.from({ length: 4 }, () => randomText(rng.int(1000, 3000)));
      const encodeAsync = jest.spyOn(model.tokenizer, "encodeAsync");
      try {
        for (const run of [
          (signal: AbortSignal) => model.generateBatch(texts, { maxNewTokens: 1, signal }),
          (signal: AbortSignal) =>
            model.scoreBatch(
              texts.map((prompt) => ({ prompt, continuation: " a" })),
              { signal },
            ),
        ]) {
          encodeAsync.mockClear();
          const controller = new AbortController();
          const ended = expect(run(controller.signal)).rejects.toMatchObject({ name: "AbortError" });
          controller.abort();
          await ended;
          // The first prompt was being encoded when the signal came; none after it was started.
          expect(encodeAsync.mock.calls.length).toBeLessThanOrEqual(2);
        }
      } finally {
        encodeAsync.mockRestore();
      }
    });

    test("a session is busy while its prompt is encoded: a second turn meanwhile is refused", async () => {
      const session = model.createSession();
      const first = session.generate(randomText(rng.int(20000, 30000)), { maxNewTokens: 1 }).next();
      await new Promise((r) => setImmediate(r));
      await expect(session.generate("hi", { maxNewTokens: 1 }).next()).rejects.toThrow("this session is already generating");
      await expect(first).rejects.toThrow(/more than maxContext/);
      // And free again afterwards.
      const { done } = await session.generate("hi", { maxNewTokens: 1 }).next();
      expect(done).toBe(false);
    });
  });
});
