// Tokenizer files that are valid JSON but not a tokenizer (null, an array, a broken model, a chat
// template that does not parse) are errors naming the file, not TypeErrors from inside the library.
import * as fs from "node:fs";
import * as path from "node:path";
import { loadModel } from "../../lib";
import { copyFixture, editJson } from "../helpers/model-dir";

test.each([
  ["null", "tokenizer.json", "null", /tokenizer\.json: must hold a JSON object \(the tokenizer\)/],
  ["an array", "tokenizer.json", "[]", /tokenizer\.json: must hold a JSON object \(the tokenizer\)/],
  ["a number as the config", "tokenizer_config.json", "7", /tokenizer_config\.json: must hold a JSON object \(the tokenizer config\)/],
])("%s in %s is an error naming the file", async (_, file, text, message) => {
  const dir = copyFixture("qwen2-tiny");
  fs.writeFileSync(path.join(dir, file), text);
  await expect(loadModel(dir, { device: "cpu" })).rejects.toThrow(message);
});

test("a tokenizer.json without a model is an error naming the file", async () => {
  const dir = copyFixture("qwen2-tiny");
  editJson(dir, "tokenizer.json", (j) => ({ ...j, model: null }));
  await expect(loadModel(dir, { device: "cpu" })).rejects.toThrow(/tokenizer\.json: cannot be used as a tokenizer/);
});

test.each([
  ["a number", 5, /chat_template must be a string or a list of named templates/],
  ["a template that does not parse", "{% if %}", /tokenizer\.json: cannot be used as a tokenizer/],
])("a chat_template that is %s is an error naming the file", async (_, template, message) => {
  const dir = copyFixture("qwen2-tiny");
  editJson(dir, "tokenizer_config.json", (j) => ({ ...j, chat_template: template }));
  await expect(loadModel(dir, { device: "cpu" })).rejects.toThrow(message);
});
