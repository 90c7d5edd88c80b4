// Token ids as prompts (number[] and Int32Array) in session.generate and generateBatch, checked
// against the vocabulary; and a model loaded without a tokenizer, which takes ids only.
import * as fs from "node:fs";
import * as path from "node:path";
import { loadModel, type Model } from "../lib";
import { fixtureRoot, readReference } from "./helpers/fixtures";
import { copyFixture } from "./helpers/model-dir";
import { Random } from "./helpers/reference";

const rng = new Random();

const reference = readReference("llama-tiny");
const vocab = 384;
const cpu = { device: "cpu" as const, kvCacheBytes: 4 * 2 ** 20 };

async function collect(stream: AsyncIterable<{ text: string; tokens: number[] }>) {
  let text = "";
  const tokens: number[] = [];
  for await (const chunk of stream) {
    text += chunk.text;
    tokens.push(...chunk.tokens);
  }
  return { text, tokens };
}

/** Fresh random ids in the vocabulary (never all zeros: the first is at least 1). */
function randomIds(length: number): number[] {
  return Array.from({ length }, (_, i) => (i === 0 ? 1 : 0) + rng.int(0, vocab - 2));
}

describe(`seed ${rng.seed}`, () => {
  describe("with a tokenizer", () => {
    let model: Model;
    beforeAll(async () => {
      model = await loadModel(path.join(fixtureRoot, "llama-tiny"), cpu);
    });
    afterAll(async () => model?.dispose());

    test("read-only prompts, stop strings and lazy layers (as const, frozen) are taken as given ones are", async () => {
      const ids = randomIds(rng.int(3, 10));
      const frozen = Object.freeze([...ids]);
      const options = { maxNewTokens: 6, stopAtEos: false, stop: Object.freeze(["\n\n"] as const) };
      const hybrid = { mode: "fixed", lazyLayers: [0] as const } as const;
      const session = model.createSession({ hybrid });
      try {
        const got = await collect(session.generate(frozen, options));
        expect(got).toEqual(await collect(model.generate(ids, { ...options, stop: ["\n\n"], hybrid: { mode: "fixed", lazyLayers: [0] } })));
      } finally {
        session.dispose();
      }
      const [batch] = await model.generateBatch(Object.freeze([frozen]), options);
      expect(batch.tokens).toHaveLength(6);
      const scored = await model.score(frozen, Object.freeze([ids[0]]));
      expect(scored.tokens).toEqual([ids[0]]);
    });

    test.each(reference.cases.map((c) => [c.prompt, c] as const))("ids of %j give the tokens and text of the text prompt", async (_, c) => {
      const options = { maxNewTokens: 8, stopAtEos: false };
      const fromText = await collect(model.generate(c.prompt, options));
      const ids = model.tokenizer.encode(c.prompt);
      expect(await collect(model.generate(ids, options))).toEqual(fromText);
      expect(await collect(model.generate(Int32Array.from(ids), options))).toEqual(fromText);
    });

    test("a chat prompt and its ids give the same tokens", async () => {
      const chat = [{ role: "user", content: "Hi there!" }];
      const ids = model.tokenizer.encode(model.tokenizer.applyChatTemplate(chat), { addSpecialTokens: false });
      const options = { maxNewTokens: 6, stopAtEos: false };
      expect(await collect(model.generate(ids, options))).toEqual(await collect(model.generate(chat, options)));
    });

    test("generateBatch takes ids, Int32Array and text side by side, each as it would alone", async () => {
      const random = randomIds(rng.int(5, 24));
      const text = reference.cases[2].prompt;
      const options = { maxNewTokens: 5, stopAtEos: false };
      const results = await model.generateBatch([random, Int32Array.from(random), text, model.tokenizer.encode(text)], options);
      const alone = await collect(model.generate(random, options));
      expect(results[0].tokens).toEqual(alone.tokens);
      expect(results[1].tokens).toEqual(alone.tokens);
      expect(results[2].tokens).toEqual(results[3].tokens);
      expect(results[2].text).toBe(results[3].text);
    });

    test("a session continues from id prompts as from text", async () => {
      const [a, b] = [reference.cases[0].prompt, reference.cases[2].prompt];
      const options = { maxNewTokens: 4, stopAtEos: false };
      const byText = model.createSession();
      const byIds = model.createSession();
      try {
        expect(await collect(byIds.generate(model.tokenizer.encode(a), options))).toEqual(await collect(byText.generate(a, options)));
        // A later turn's text goes on without the tokenizer's special tokens.
        expect(await collect(byIds.generate(Int32Array.from(model.tokenizer.encode(b, { addSpecialTokens: false })), options))).toEqual(
          await collect(byText.generate(b, options)),
        );
        expect(byIds.stats.contextTokens).toBe(byText.stats.contextTokens);
      } finally {
        byText.dispose();
        byIds.dispose();
      }
    });

    const bad: Array<[string, number, RegExp]> = [
      ["a negative id", -1, /is -1: token ids must be integers in \[0, 383\]/],
      ["the vocabulary size", vocab, /is 384: token ids must be integers in \[0, 383\]/],
      ["a fraction", 2.5, /is 2.5: token ids must be integers in \[0, 383\]/],
      ["more than int32", 2 ** 31, /is 2147483648: token ids must be integers in \[0, 383\]/],
      ["NaN", NaN, /is NaN: token ids must be integers/],
    ];
    test.each(bad)("%s is an Error naming its index, and nothing is generated", async (_, id, message) => {
      const ids = randomIds(6);
      const at = rng.int(1, 5);
      ids[at] = id;
      const session = model.createSession();
      try {
        const indexed = new RegExp(`generate: prompt\\[${at}\\] ${message.source}`);
        await expect(collect(session.generate(ids))).rejects.toThrow(indexed);
        expect(session.stats.contextTokens).toBe(0);
        await expect(model.generateBatch([randomIds(3), ids])).rejects.toThrow(
          new RegExp(`generateBatch: prompts\\[1\\]\\[${at}\\] ${message.source}`),
        );
      } finally {
        session.dispose();
      }
    });

    test("an Int32Array id out of the vocabulary is named too; an empty id list is an error", async () => {
      await expect(collect(model.generate(Int32Array.of(5, 7, 400)))).rejects.toThrow(/generate: prompt\[2\] is 400/);
      await expect(collect(model.generate(new Int32Array(0)))).rejects.toThrow(/generate: prompt is empty/);
    });
  });

  describe("without a tokenizer", () => {
    const dirs: string[] = [];
    afterAll(() => {
      for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
    });

    test("a directory without tokenizer.json loads, generates the reference greedy tokens from ids, and refuses text", async () => {
      const dir = copyFixture("llama-tiny");
      dirs.push(dir);
      fs.rmSync(path.join(dir, "tokenizer.json"));
      const model = await loadModel(dir, cpu);
      try {
        expect(model.hasTokenizer).toBe(false);
        for (const c of reference.cases) {
          const chunks: Array<{ text: string; tokens: number[] }> = [];
          for await (const chunk of model.generate(c.ids, { maxNewTokens: c.greedy.length, stopAtEos: false })) chunks.push(chunk);
          expect(chunks.flatMap((ch) => ch.tokens)).toEqual(c.greedy);
          expect(chunks.every((ch) => ch.text === "")).toBe(true);
        }
        const remedy = /this model was loaded without a tokenizer; pass token ids \(a number\[\] or Int32Array\) as the prompt/;
        await expect(collect(model.generate("Once upon a time"))).rejects.toThrow(remedy);
        await expect(collect(model.generate([{ role: "user", content: "Hi" }]))).rejects.toThrow(remedy);
        await expect(model.generateBatch([[1, 2], "text"])).rejects.toThrow(/generateBatch: prompts\[1\]: this model was loaded without/);
        await expect(collect(model.generate([1, 2], { stop: ["\n"] }))).rejects.toThrow(
          /generate: stop strings need a tokenizer, and this model was loaded without one/,
        );
        await expect(model.generateBatch([[1, 2]], { stop: ["x"] })).rejects.toThrow(/generateBatch: stop strings need a tokenizer/);
        expect(() => model.tokenizer).toThrow(/model.tokenizer: this model was loaded without a tokenizer/);
      } finally {
        await model.dispose();
      }
    });

    test("tokenizer: false skips a tokenizer that is there", async () => {
      const model = await loadModel(path.join(fixtureRoot, "llama-tiny"), { ...cpu, tokenizer: false });
      try {
        expect(model.hasTokenizer).toBe(false);
        const c = reference.cases[1];
        const result = (await model.generateBatch([c.ids], { maxNewTokens: c.greedy.length, stopAtEos: false }))[0];
        expect(result).toMatchObject({ text: "", tokens: c.greedy, finishReason: "length" });
      } finally {
        await model.dispose();
      }
    });

    test("an EOS id from config.json ends a generation without a tokenizer (no generation_config.json)", async () => {
      const dir = copyFixture("llama-tiny");
      dirs.push(dir);
      fs.rmSync(path.join(dir, "generation_config.json"));
      const c = reference.cases[0];
      const eos = c.greedy[2];
      const config = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
      fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...config, eos_token_id: eos }));
      const model = await loadModel(dir, { ...cpu, tokenizer: false });
      try {
        const [result] = await model.generateBatch([c.ids], { maxNewTokens: 10 });
        expect(result.finishReason).toBe("eos");
        expect(result.tokens).toEqual(c.greedy.slice(0, c.greedy.indexOf(eos) + 1));
      } finally {
        await model.dispose();
      }
    });

    test("tokenizer: true where tokenizer.json is missing is an error naming the file; a non-boolean is an error", async () => {
      const dir = copyFixture("llama-tiny");
      dirs.push(dir);
      fs.rmSync(path.join(dir, "tokenizer.json"));
      await expect(loadModel(dir, { ...cpu, tokenizer: true })).rejects.toThrow(/tokenizer\.json: not found \(the tokenizer is needed\)/);
      await expect(loadModel(dir, { ...cpu, tokenizer: "no" as never })).rejects.toThrow(/loadModel: tokenizer must be/);
    });
  });
});
