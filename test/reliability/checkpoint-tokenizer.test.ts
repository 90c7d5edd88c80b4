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

test("a chat_template that is a number is an error naming the file", async () => {
  const dir = copyFixture("qwen2-tiny");
  editJson(dir, "tokenizer_config.json", (j) => ({ ...j, chat_template: 5 }));
  await expect(loadModel(dir, { device: "cpu" })).rejects.toThrow(/chat_template must be a string or a list of named templates/);
});

test("a chat_template that does not parse loads: text prompts generate, chat prompts are an error naming the file", async () => {
  const dir = copyFixture("qwen2-tiny");
  editJson(dir, "tokenizer_config.json", (j) => ({ ...j, chat_template: "{% if %}" }));
  const model = await loadModel(dir, { device: "cpu" });
  try {
    const [text] = await model.generateBatch(["Hello"], { maxNewTokens: 2, temperature: 0 });
    expect(text.tokens.length).toBeGreaterThan(0);
    await expect(model.generateBatch([[{ role: "user", content: "Hello" }]], { maxNewTokens: 2 })).rejects.toThrow(
      /this model's chat_template \(tokenizer_config\.json\) does not parse: Unexpected token/,
    );
  } finally {
    await model.dispose();
  }
});
