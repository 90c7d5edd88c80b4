// EOS ids from generation_config.json (one id or a list), which take precedence over config.json's
// as in transformers' generate, and end generation; bad values are errors naming the file.
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError, loadModel } from "../lib";
import { readConfig } from "../lib/checkpoint/config";
import { readReference } from "./helpers/fixtures";
import { copyFixture, editJson } from "./helpers/model-dir";
import { Random } from "./helpers/reference";

const rng = new Random();

const reference = readReference("llama-tiny");
const cpu = { device: "cpu" as const, kvCacheBytes: 4 * 2 ** 20 };
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function fixtureCopy(): string {
  const dir = copyFixture("llama-tiny");
  dirs.push(dir);
  return dir;
}

/** A fresh id of the vocabulary that is none of `avoid`. */
function idOutside(avoid: readonly number[]): number {
  for (;;) {
    const id = rng.int(2, 381);
    if (!avoid.includes(id)) return id;
  }
}

describe(`seed ${rng.seed}`, () => {
  test("a list of EOS ids in generation_config.json ends generation at the first of them generated, over config.json's", async () => {
    const c = reference.cases[1];
    const at = rng.int(1, c.greedy.length - 2);
    const eos = c.greedy[at];
    const unused = idOutside(c.greedy);
    const dir = fixtureCopy();
    editJson(dir, "config.json", (j) => ({ ...j, eos_token_id: idOutside([...c.greedy, unused]) }));
    editJson(dir, "generation_config.json", (j) => ({ ...j, eos_token_id: [unused, eos] }));
    expect(readConfig(dir).eosTokenIds).toEqual([unused, eos]);
    const model = await loadModel(dir, cpu);
    try {
      const [result] = await model.generateBatch([c.ids], { maxNewTokens: c.greedy.length });
      expect(result.finishReason).toBe("eos");
      expect(result.tokens).toEqual(c.greedy.slice(0, c.greedy.indexOf(eos) + 1));
      const [ignored] = await model.generateBatch([c.ids], { maxNewTokens: c.greedy.length, stopAtEos: false });
      expect(ignored).toMatchObject({ tokens: c.greedy, finishReason: "length" });
    } finally {
      await model.dispose();
    }
  });

  test("a generation_config.json without eos_token_id leaves config.json's", () => {
    const dir = fixtureCopy();
    const eos = idOutside([]);
    editJson(dir, "config.json", (j) => ({ ...j, eos_token_id: eos }));
    editJson(dir, "generation_config.json", (j) => ({ ...j, eos_token_id: undefined }));
    expect(readConfig(dir).eosTokenIds).toEqual([eos]);
  });

  test.each([
    [[1, 384], /generation_config\.json: 'eos_token_id' must be a token id in \[0, 383\], got 384 \(one id or a list of them\)/],
    ["2", /generation_config\.json: 'eos_token_id' must be a token id .* got "2"/],
    [[1.5], /generation_config\.json: 'eos_token_id' must be a token id .* got 1\.5/],
  ])("eos_token_id %j in generation_config.json is a ConfigError naming the file", (bad, message) => {
    const dir = fixtureCopy();
    editJson(dir, "generation_config.json", (j) => ({ ...j, eos_token_id: bad }));
    expect(() => readConfig(dir)).toThrow(ConfigError);
    expect(() => readConfig(dir)).toThrow(message);
  });

  test("a generation_config.json that is not a JSON object is an error naming it", () => {
    const dir = fixtureCopy();
    fs.writeFileSync(path.join(dir, "generation_config.json"), "{ not json");
    expect(() => readConfig(dir)).toThrow(/generation_config\.json: cannot be read as JSON/);
    fs.writeFileSync(path.join(dir, "generation_config.json"), "[1]");
    expect(() => readConfig(dir)).toThrow(/generation_config\.json: must hold a JSON object/);
  });
});
