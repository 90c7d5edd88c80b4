// A session's conversation holds every token it generated: a turn's last token, which no decode
// step of that turn fed to the model, goes in before the next turn's prompt. Greedy turns of a
// session equal one generation over the whole conversation written out.
import * as path from "node:path";
import { loadModel, type Model } from "../lib";
import { fixtureRoot } from "./helpers/fixtures";
import { copyFixture, editJson } from "./helpers/model-dir";
import { Random } from "./helpers/reference";

const rng = new Random();
let model: Model;
beforeAll(async () => {
  model = await loadModel(path.join(fixtureRoot, "llama-tiny"), { device: "cpu", kvCacheBytes: 2 ** 22 });
});
afterAll(async () => model?.dispose());

const randomIds = (n: number) => Array.from({ length: n }, () => rng.int(3, 383));

async function collect(stream: AsyncIterable<{ tokens: number[] }>, stopAfter = Infinity): Promise<number[]> {
  const ids: number[] = [];
  for await (const chunk of stream) {
    ids.push(...chunk.tokens);
    if (ids.length >= stopAfter) break;
  }
  return ids;
}

describe(`seed ${rng.seed}`, () => {
  test.each([
    ["runs to maxNewTokens", Infinity],
    ["is left early by its reader", 2],
  ])("a turn that %s: the next turn continues from every token it gave", async (_, stopAfter) => {
    const [p, q] = [randomIds(rng.int(2, 12)), randomIds(rng.int(1, 8))];
    const session = model.createSession();
    try {
      const first = await collect(session.generate(p, { maxNewTokens: rng.int(3, 6) }), stopAfter);
      const second = await collect(session.generate(q, { maxNewTokens: 4 }));
      expect(session.stats.generatedTokens).toBe(first.length + second.length);
      // The cache holds all but the last token given, which the next turn will feed.
      expect(session.stats.contextTokens).toBe(p.length + first.length + q.length + second.length - 1);
      expect(second).toEqual(await collect(model.generate([...p, ...first, ...q], { maxNewTokens: 4 })));
    } finally {
      session.dispose();
    }
  });

  // Chat turns: test/chat-history.test.ts.
  test("a later turn of text goes on from the session without a second BOS; the first turn has it", async () => {
    const tok = model.tokenizer;
    const bos = tok.tokenId(tok.bosToken!)!;
    const [first, second] = [rng.int(0, 1000), rng.int(0, 1000)].map((n) => ` the ${n} men said`);
    const [opening, next] = [tok.encode(first), tok.encode(second, { addSpecialTokens: false })];
    expect([opening[0], next.includes(bos)]).toEqual([bos, false]);
    const session = model.createSession();
    try {
      const options = { maxNewTokens: rng.int(2, 5), stopAtEos: false };
      const reply = await collect(session.generate(first, options));
      const again = await collect(session.generate(second, options));
      expect(session.stats.promptTokens).toBe(opening.length + next.length);
      expect(again).toEqual(await collect(model.generate([...opening, ...reply, ...next], options)));
    } finally {
      session.dispose();
    }
  });

  test("an empty text prompt after a reply goes on with that reply; with nothing to go on from it is an error", async () => {
    const prompt = randomIds(rng.int(2, 12));
    const [n1, n2] = [rng.int(1, 5), rng.int(1, 5)];
    const options = { stopAtEos: false };
    const session = model.createSession();
    try {
      const first = await collect(session.generate(prompt, { ...options, maxNewTokens: n1 }));
      const more = await collect(session.generate("", { ...options, maxNewTokens: n2 }));
      expect([...first, ...more]).toEqual(await collect(model.generate(prompt, { ...options, maxNewTokens: n1 + n2 })));
      expect(session.stats.promptTokens).toBe(prompt.length);
      await collect(session.generate(randomIds(2), { maxNewTokens: 0 }));
      await expect(session.generate("", { maxNewTokens: 1 }).next()).rejects.toThrow("the prompt encodes to no tokens");
    } finally {
      session.dispose();
    }
  });

  test("a reply that ended at maxContext does not go on past it with an empty prompt", async () => {
    const maxContext = rng.int(8, 16);
    const prompt = randomIds(rng.int(2, maxContext - 2));
    const session = model.createSession({ maxContext });
    try {
      const options = { maxNewTokens: 64, stopAtEos: false };
      const chunks: string[] = [];
      for await (const chunk of session.generate(prompt, options)) if (chunk.finishReason) chunks.push(chunk.finishReason);
      expect({ chunks, held: session.stats.contextTokens }).toEqual({ chunks: ["context"], held: maxContext });
      await expect(session.generate("", options).next()).rejects.toThrow(
        `the reply cannot go on: the session holds ${maxContext + 1} tokens with the reply's last, more than maxContext ${maxContext}`,
      );
      expect(session.stats.contextTokens).toBe(maxContext);
    } finally {
      session.dispose();
    }
  });

  test("a repetition penalty counts the earlier turns, as one generation over the whole conversation does", async () => {
    // Turns of tokens drawn from a small set, so that the penalised tokens matter to the choice.
    const words = randomIds(6);
    const turn = () => Array.from({ length: rng.int(2, 8) }, () => words[rng.int(0, words.length - 1)]);
    const options = { maxNewTokens: rng.int(4, 8), repetitionPenalty: 1.5 + rng.int(0, 10) / 10, stopAtEos: false };
    const session = model.createSession();
    try {
      const conversation: number[] = [];
      for (let t = 0; t < 3; t++) {
        const prompt = turn();
        conversation.push(...prompt);
        const reply = await collect(session.generate(prompt, options));
        expect(reply).toEqual(await collect(model.generate(conversation, options)));
        conversation.push(...reply);
      }
    } finally {
      session.dispose();
    }
  });

  test("a turn longer than a call may take arguments (140,000 tokens), then another: the session keeps count", async () => {
    // Lazy layers streaming from the start, so that the long prompt prefills quickly on a CPU.
    const dir = copyFixture("llama-tiny");
    editJson(dir, "config.json", (c) => ({ ...c, max_position_embeddings: 2 ** 18 }));
    const long = await loadModel(dir, { device: "cpu", kvCacheBytes: 2 ** 24, tokenizer: false });
    const L = long.config.layers;
    const session = long.createSession({
      hybrid: { mode: "fixed", lazyLayers: Array.from({ length: L }, (_, l) => l), sink: 4, window: 60, prefill: "streaming" },
    });
    try {
      const prompt = randomIds(140_000 + rng.int(0, 1000));
      const first = await collect(session.generate(prompt, { maxNewTokens: 2, stopAtEos: false }));
      expect(first).toHaveLength(2);
      const next = randomIds(rng.int(1, 5));
      expect(await collect(session.generate(next, { maxNewTokens: 1, stopAtEos: false }))).toHaveLength(1);
      expect(session.stats.contextTokens).toBe(prompt.length + 2 + next.length);
    } finally {
      session.dispose();
      await long.dispose();
    }
  }, 120_000);

  test("a turn of maxNewTokens 0 generates nothing and counts nothing as generated", async () => {
    const p = randomIds(rng.int(2, 12));
    const session = model.createSession();
    try {
      expect(await collect(session.generate(p, { maxNewTokens: 0 }))).toEqual([]);
      expect({ generated: session.stats.generatedTokens, prompt: session.stats.promptTokens }).toEqual({ generated: 0, prompt: p.length });
    } finally {
      session.dispose();
    }
  });

  test("the carried token counts towards maxContext, and as generated, not as prompt", async () => {
    const p = randomIds(rng.int(2, 10));
    const generated = rng.int(2, 5);
    const held = p.length + generated; // in the cache, plus the one the next turn feeds
    const room = rng.int(2, 6);
    const session = model.createSession({ maxContext: held + room });
    try {
      // all `generated` tokens, even where the random model's greedy choice is </s>
      await collect(session.generate(p, { maxNewTokens: generated, stopAtEos: false }));
      expect(session.stats.contextTokens).toBe(held - 1);
      const tooLong = randomIds(room + 1);
      await expect(collect(session.generate(tooLong, { maxNewTokens: 1 }))).rejects.toThrow(
        new RegExp(`the prompt has ${room + 1} tokens and the session already holds ${held}: .* go on in a new session`),
      );
      const q = randomIds(room);
      await collect(session.generate(q, { maxNewTokens: 1 }));
      expect(session.stats.promptTokens).toBe(p.length + q.length);
      expect(session.stats.contextTokens).toBe(held + room);
    } finally {
      session.dispose();
    }
  });
});
