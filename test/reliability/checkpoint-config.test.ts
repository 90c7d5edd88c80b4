// config.json fields are checked, with bounds, before anything is planned or allocated: a
// hostile or broken config is a ConfigError naming the field, the value and the allowed range,
// never a process killed by a heap out-of-memory abort.
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError, loadModel } from "../../lib";
import { parseConfig } from "../../lib/checkpoint/config";
import { runChild } from "../helpers/child";
import { fixtureRoot } from "../helpers/fixtures";
import { copyFixture, editJson } from "../helpers/model-dir";

const llama = () => JSON.parse(fs.readFileSync(path.join(fixtureRoot, "llama-tiny", "config.json"), "utf8"));

test("num_hidden_layers: 1e9 is a ConfigError in a child process, not a heap out-of-memory death", () => {
  const dir = copyFixture("llama-tiny");
  editJson(dir, "config.json", (c) => ({ ...c, num_hidden_layers: 1e9 }));
  const r = runChild(
    `
    const { loadModel } = require(process.env.LIGHTTRANSFER_ROOT + "/lib");
    loadModel(${JSON.stringify(dir)}, { device: "cpu" }).then(
      () => console.log("RESULT loaded"),
      (err) => console.log("RESULT " + err.name + ": " + err.message),
    );
  `,
    { heapMiB: 256 },
  );
  expect({ status: r.status, signal: r.signal, stderr: r.status === 0 ? "" : r.stderr.slice(-2000) }).toEqual({
    status: 0,
    signal: null,
    stderr: "",
  });
  expect(r.stdout).toMatch(/RESULT ConfigError: .*config\.json: 'num_hidden_layers' must be an integer in \[1, \d+\], got 1000000000/);
});

test.each([
  ["num_hidden_layers", 1e9, /'num_hidden_layers' must be an integer in \[1, \d+\], got 1000000000/],
  ["num_hidden_layers", 0, /'num_hidden_layers' must be an integer in \[1, \d+\], got 0/],
  ["num_hidden_layers", "3", /'num_hidden_layers' must be an integer in \[1, \d+\], got "3"/],
  ["hidden_size", 2 ** 40, /'hidden_size' must be an integer in \[1, \d+\], got 1099511627776/],
  ["intermediate_size", 1.5, /'intermediate_size' must be an integer in \[1, \d+\], got 1.5/],
  ["vocab_size", 2 ** 31, /'vocab_size' must be an integer in \[1, \d+\], got 2147483648/],
  ["num_attention_heads", 1e6, /'num_attention_heads' must be an integer in \[1, \d+\], got 1000000/],
  ["num_key_value_heads", 4, /'num_key_value_heads' must be an integer in \[1, 2\] dividing num_attention_heads \(2\), got 4/],
  ["head_dim", 1e7, /'head_dim' must be an integer in \[2, \d+\], got 10000000/],
  ["head_dim", 258, /'head_dim' must be an integer in \[2, 256\], got 258/],
  ["head_dim", 63, /'head_dim' must be even \(rotary embeddings rotate pairs\) and at most \d+, got 63/],
  ["max_position_embeddings", 2 ** 53, /'max_position_embeddings' must be an integer in \[1, \d+\], got 9007199254740992/],
  ["rms_norm_eps", "1e-5", /'rms_norm_eps' must be a number in \(0, 1\) that float32 holds \(at least 1\.4e-45\), got "1e-5"/],
  ["rms_norm_eps", 5, /'rms_norm_eps' must be a number in \(0, 1\) that float32 holds \(at least 1\.4e-45\), got 5/],
  ["rms_norm_eps", 1e-50, /'rms_norm_eps' must be a number in \(0, 1\) that float32 holds \(at least 1\.4e-45\), got 1e-50/],
  ["rope_theta", -1, /'rope_theta' must be a finite number > 0, got -1/],
  ["eos_token_id", 100000, /'eos_token_id' must be a token id in \[0, 383\], got 100000/],
  ["eos_token_id", [1, "x"], /'eos_token_id' must be a token id in \[0, 383\], got "x"/],
  ["bos_token_id", -1, /'bos_token_id' must be a token id in \[0, 383\], got -1/],
  ["tie_word_embeddings", "yes", /'tie_word_embeddings' must be true or false, got "yes"/],
  ["rope_parameters", "llama3", /'rope_parameters' must be an object, got "llama3"/],
])("%s = %j is a ConfigError naming the field, the value and the range", async (field, value, message) => {
  const raw = { ...llama(), [field]: value };
  expect(() => parseConfig(raw)).toThrow(ConfigError);
  expect(() => parseConfig(raw)).toThrow(message);
  const dir = copyFixture("llama-tiny");
  editJson(dir, "config.json", () => raw);
  await expect(loadModel(dir, { device: "cpu" })).rejects.toThrow(message);
});

test.each([
  ["null", "null"],
  ["a number", "5"],
  ["an array", "[1, 2]"],
])("config.json holding %s is a ConfigError", async (_, json) => {
  const dir = copyFixture("llama-tiny");
  fs.writeFileSync(path.join(dir, "config.json"), json);
  await expect(loadModel(dir, { device: "cpu" })).rejects.toThrow(/config\.json: must hold a JSON object/);
});

test("rope scaling fields are bounded numbers", () => {
  const raw = llama();
  expect(() => parseConfig({ ...raw, rope_parameters: { ...raw.rope_parameters, factor: "8" } })).toThrow(
    /rope_scaling\.factor must be a finite number > 0, got "8"/,
  );
  expect(() => parseConfig({ ...raw, rope_parameters: { ...raw.rope_parameters, original_max_position_embeddings: 1e12 } })).toThrow(
    /rope_scaling\.original_max_position_embeddings must be an integer in \[1, \d+\], got 1000000000000/,
  );
});

test("a config at the bounds still parses", () => {
  const raw = llama();
  const config = parseConfig({ ...raw, num_hidden_layers: 1024, eos_token_id: [1, 383] });
  expect(config.layers).toBe(1024);
  expect(config.eosTokenIds).toEqual([1, 383]);
});
