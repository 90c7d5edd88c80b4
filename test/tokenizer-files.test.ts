// Tokenizer files a model may ship broken: a chat template that does not parse or that refuses
// the messages, and added tokens without their text. Each gives an Error that says what is wrong
// in which file, and a broken template does not stop text prompts.
import * as fs from "node:fs";
import * as path from "node:path";
import { Tokenizer } from "../lib";
import { copyFixture, editJson } from "./helpers/model-dir";
import { Random } from "./helpers/reference";

const rng = new Random();

let dir: string;
beforeEach(() => {
  dir = copyFixture("llama-tiny");
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const messages = [{ role: "user", content: "Hello" }];

test.each(["{%", "{{ bos_token }}{% for message in messages %}{{ message['content'] }}", "text {{"])(
  "a chat template that does not parse (%j) still loads; text prompts work, chat prompts say why not",
  (template) => {
    editJson(dir, "tokenizer_config.json", (c) => ({ ...c, chat_template: template }));
    const tok = Tokenizer.fromDirectory(dir);
    // What "auto" chat (eval) reads: a template that cannot render is none.
    expect(tok.hasChatTemplate).toBe(false);
    expect(tok.decode(tok.encode("Hello world", { addSpecialTokens: false }))).toBe("Hello world");
    expect(() => tok.applyChatTemplate(messages)).toThrow(
      /this model's chat_template \(tokenizer_config\.json\) does not parse: it ends with a tag, an expression or a block .* still open; fix it, or pass plain text/,
    );
  },
);

test("a template's own syntax error is passed on", () => {
  editJson(dir, "tokenizer_config.json", (c) => ({ ...c, chat_template: "{% if messages %}" }));
  expect(() => Tokenizer.fromDirectory(dir).applyChatTemplate(messages)).toThrow(/does not parse: .{8,}/);
});

test("a template that refuses the messages says so, with the template's words", () => {
  editJson(dir, "tokenizer_config.json", (c) => ({
    ...c,
    chat_template:
      "{% if messages[0]['role'] != 'system' %}{{ raise_exception('Conversations must start with a system message') }}{% endif %}",
  }));
  const tok = Tokenizer.fromDirectory(dir);
  expect(() => tok.applyChatTemplate(messages)).toThrow(
    "this model's chat template failed on these messages: Conversations must start with a system message",
  );
  expect(tok.applyChatTemplate([{ role: "system", content: "Be brief" }, ...messages])).toBe("");
});

test.each([
  ["without its content", (t: Record<string, unknown>) => delete t.content],
  ["with a numeric content", (t: Record<string, unknown>) => (t.content = 7)],
  ["with a negative id", (t: Record<string, unknown>) => (t.id = -1)],
  ["with a fractional id", (t: Record<string, unknown>) => (t.id = 1.5)],
])("tokenizer.json with an added token %s names the entry", (_what, change) => {
  editJson(dir, "tokenizer.json", (json) => {
    change((json.added_tokens as Record<string, unknown>[])[2]);
    return json;
  });
  expect(() => Tokenizer.fromDirectory(dir)).toThrow(
    /tokenizer\.json: cannot be used as a tokenizer with .*tokenizer_config\.json \(added_tokens\[2\] must be an object with a string "content" and an integer "id" >= 0\)/,
  );
});

test("tokenizer.json whose added_tokens is not a list says so", () => {
  editJson(dir, "tokenizer.json", (json) => ({ ...json, added_tokens: { 0: "x" } }));
  expect(() => Tokenizer.fromDirectory(dir)).toThrow(/added_tokens must be a list, got object/);
});

// Where transformers finds a chat template: chat_template.jinja (what it saves since 4.47), ahead of
// tokenizer_config.json's chat_template, which may be null or a list of named templates.
describe(`chat template sources, seed ${rng.seed}`, () => {
  const jinja = "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}";
  const content = Array.from({ length: rng.int(1, 4) }, () => `word${rng.int(0, 1e6)}`).join(" ");

  test("chat_template.jinja is the template, ahead of tokenizer_config.json's, as transformers reads it", () => {
    fs.writeFileSync(path.join(dir, "chat_template.jinja"), jinja);
    const want = `[user]${content}[assistant]`;
    expect(Tokenizer.fromDirectory(dir).applyChatTemplate([{ role: "user", content }])).toBe(want);
    editJson(dir, "tokenizer_config.json", ({ chat_template: _, ...c }) => c);
    const tok = Tokenizer.fromDirectory(dir);
    expect(tok.hasChatTemplate).toBe(true);
    expect(tok.applyChatTemplate([{ role: "user", content }])).toBe(want);
  });

  test("chat_template: null is no template: the tokenizer loads, chat prompts say there is none", () => {
    editJson(dir, "tokenizer_config.json", (c) => ({ ...c, chat_template: null }));
    const tok = Tokenizer.fromDirectory(dir);
    expect(tok.hasChatTemplate).toBe(false);
    expect(tok.decode(tok.encode(content, { addSpecialTokens: false }))).toBe(content);
    expect(() => tok.applyChatTemplate(messages)).toThrow(
      "this model has no chat template (no chat_template.jinja, none in tokenizer_config.json); pass plain text instead",
    );
  });

  test('a list of named templates without a "default" says that no template is named "default"', () => {
    const names = Array.from({ length: rng.int(1, 3) }, (_, i) => `tool_use_${i}_${rng.int(0, 999)}`);
    editJson(dir, "tokenizer_config.json", (c) => ({ ...c, chat_template: names.map((name) => ({ name, template: jinja })) }));
    const tok = Tokenizer.fromDirectory(dir);
    expect(tok.hasChatTemplate).toBe(false);
    expect(() => tok.applyChatTemplate(messages)).toThrow(
      `this model's chat_template (tokenizer_config.json) is a list of templates (${names.map((n) => JSON.stringify(n)).join(", ")}) ` +
        'with none named "default", the one chat prompts use; name one "default", or pass plain text',
    );
    editJson(dir, "tokenizer_config.json", (c) => ({
      ...c,
      chat_template: [...(c.chat_template as object[]), { name: "default", template: jinja }],
    }));
    expect(Tokenizer.fromDirectory(dir).applyChatTemplate([{ role: "user", content }])).toBe(`[user]${content}[assistant]`);
  });

  test("a chat_template.jinja that does not parse is named in the error", () => {
    fs.writeFileSync(path.join(dir, "chat_template.jinja"), `${jinja}{% if`);
    const tok = Tokenizer.fromDirectory(dir);
    expect(tok.hasChatTemplate).toBe(false);
    expect(() => tok.applyChatTemplate(messages)).toThrow(/this model's chat_template \(chat_template\.jinja\) does not parse: /);
  });
});

test("encode, encodeAsync and decode check their text and options: a misspelt option is refused, not left out", async () => {
  const tok = Tokenizer.fromDirectory(copyFixture("llama-tiny"));
  expect(() => tok.encode(["a"] as never)).toThrow("encode: text must be a string, got an array");
  expect(() => tok.encode("a b", { addSpecial: false } as never)).toThrow(
    'encode: options has no option "addSpecial"; its options are addSpecialTokens',
  );
  await expect(tok.encodeAsync("a b", { addSpecialTokens: "no" } as never)).rejects.toThrow(
    "encodeAsync: addSpecialTokens must be true or false",
  );
  expect(() => tok.decode([1, 2], { skipSpecial: true } as never)).toThrow(
    'decode: options has no option "skipSpecial"; its options are skipSpecialTokens',
  );
  expect(tok.encode("a b", { addSpecialTokens: false })).toEqual(await tok.encodeAsync("a b", { addSpecialTokens: false }));
  await tok.dispose();
});
