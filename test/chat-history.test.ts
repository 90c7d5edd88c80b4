// A session's later chat turn is rendered within the whole conversation (ChatHistory): what the
// template adds to what the session holds, so that a block the template opens every rendering
// with is not repeated and the assistant's reply is closed as the template closes it. Templates
// here are llama-tiny's own and variants of it; replies are text with its tokens.
import * as fs from "node:fs";
import * as path from "node:path";
import { loadModel, type Model, Tokenizer } from "../lib";
import { ChatHistory } from "../lib/generate/chat-history";
import { GenerationSequence } from "../lib/generate/sequence";
import { fixtureRoot } from "./helpers/fixtures";
import { copyFixture, editJson } from "./helpers/model-dir";
import { Random } from "./helpers/reference";

const rng = new Random();
const user = (content: string) => [{ role: "user", content }];
const words = () => ` the ${rng.int(0, 1000)} men said`;

// llama-tiny's template: "{{ bos_token }}" then "<|user|>…", "<|assistant|>…{{ eos_token }}", "<|assistant|>" to generate.
const base = Tokenizer.fromDirectory(path.join(fixtureRoot, "llama-tiny"));
const template: string = JSON.parse(fs.readFileSync(path.join(fixtureRoot, "llama-tiny", "tokenizer_config.json"), "utf8")).chat_template;

/** llama-tiny's tokenizer with another chat template. */
function withTemplate(source: string): Tokenizer {
  const dir = copyFixture("llama-tiny");
  editJson(dir, "tokenizer_config.json", (c) => ({ ...c, chat_template: source }));
  return Tokenizer.fromDirectory(dir);
}

/** A reply as the session holds it: the tokens of some text, and an EOS token after them if asked. */
function reply(tok: Tokenizer, eos = false): { text: string; tokens: number[]; endsWithEos: boolean } {
  const text = ` it was ${rng.int(0, 99)} or so`;
  const tokens = tok.encode(text, { addSpecialTokens: false });
  return { text, tokens: eos ? [...tokens, tok.tokenId("</s>")!] : tokens, endsWithEos: eos };
}

describe(`seed ${rng.seed}`, () => {
  test("the first turn is the messages rendered, BOS and all; a later one what the conversation adds, the reply closed", () => {
    const history = new ChatHistory();
    const [first, second] = [words(), words()];
    const turn = history.turn(base, user(first), 0);
    expect(turn.text).toBe(`<s><|user|>${first}<|assistant|>`);
    const r = reply(base);
    history.commit(base, turn, r);
    const held = base.encode(turn.text, { addSpecialTokens: false }).length + r.tokens.length;
    // The reply ended without EOS (a length finish, a stop string): the template's EOS closes it.
    expect(history.turn(base, user(second), held).text).toBe(`</s><|user|>${second}<|assistant|>`);
  });

  test("a reply that ended with EOS is not closed twice", () => {
    const history = new ChatHistory();
    const turn = history.turn(base, user(words()), 0);
    history.commit(base, turn, reply(base, true));
    const second = words();
    expect(history.turn(base, user(second), 1).text).toBe(`<|user|>${second}<|assistant|>`);
  });

  test("a template that opens every rendering with a system block gives it once", () => {
    const tok = withTemplate(`{% if messages[0]['role'] != 'system' %}<|system|>You help.\n{% endif %}${template}`);
    const history = new ChatHistory();
    const first = words();
    const turn = history.turn(tok, user(first), 0);
    expect(turn.text).toBe(`<|system|>You help.\n<s><|user|>${first}<|assistant|>`);
    const r = reply(tok);
    history.commit(tok, turn, r);
    const second = words();
    expect(history.turn(tok, user(second), 1).text).toBe(`</s><|user|>${second}<|assistant|>`);
    // Rendered alone, the turn would have had the block again.
    expect(tok.applyChatTemplate(user(second))).toContain("<|system|>");
  });

  test.each([
    ["without EOS: the template's close of it", false, "</s>"],
    ["with EOS: no second one", true, ""],
  ])("a template that renders the reply otherwise than its tokens, a reply %s, then the new messages", (_, eos, close) => {
    // The reply's text is trimmed in the rendering (" it was …" loses its space), so the session's tokens are no prefix of it.
    const tok = withTemplate(template.replace("{{ message['content'] }}{{ eos_token }}", "{{ message['content'] | trim }}{{ eos_token }}"));
    const history = new ChatHistory();
    const turn = history.turn(tok, user(words()), 0);
    history.commit(tok, turn, reply(tok, eos));
    const second = words();
    expect(history.turn(tok, user(second), 1).text).toBe(`${close}<|user|>${second}<|assistant|>`);
  });

  test("a turn that went on from the reply with no prompt of its own makes that reply longer", () => {
    const history = new ChatHistory();
    const turn = history.turn(base, user(words()), 0);
    // The second part ended with EOS: the reply is closed, after both parts.
    history.commit(base, turn, reply(base));
    history.extendReply(base, reply(base, true));
    const second = words();
    expect(history.turn(base, user(second), 1).text).toBe(`<|user|>${second}<|assistant|>`);
  });

  test("a template that refuses the whole conversation refuses the turn, in its own words", () => {
    // As Mistral's and Gemma's templates refuse a system message after the first turn: the turn
    // alone would pass, and be a conversation the model was never shown.
    const tok = withTemplate(
      `{% for m in messages %}{% if m['role'] == 'system' and not loop.first %}{{ raise_exception('a system message comes first') }}{% endif %}{% endfor %}${template}`,
    );
    const history = new ChatHistory();
    const turn = history.turn(tok, user(words()), 0);
    history.commit(tok, turn, reply(tok));
    expect(() => history.turn(tok, [{ role: "system", content: "Be brief." }, ...user(words())], 1)).toThrow(
      "this model's chat template refuses the conversation these messages would make with the session's earlier turns: a system message comes first",
    );
    const second = words();
    expect(history.turn(tok, user(second), 1).text).toBe(`</s><|user|>${second}<|assistant|>`);
  });

  test("a template that drops what a reply reasoned (Qwen3's <think>) still closes that reply before the new messages", () => {
    // As Qwen3's: a reply keeps its reasoning while no user message follows it, and loses it once
    // one does, so the session's text is no prefix of the conversation's, and no rendering of the
    // conversation so far is a prefix of the one with the new messages either.
    const lastUser =
      "{% set ns = namespace(last=-1) %}{% for m in messages %}{% if m['role'] == 'user' %}{% set ns.last = loop.index0 %}{% endif %}{% endfor %}";
    const tok = withTemplate(
      lastUser +
        template.replace(
          "{{ message['content'] }}{{ eos_token }}",
          "{% if loop.index0 < ns.last %}{{ message['content'].split('</think>') | last }}{% else %}{{ message['content'] }}{% endif %}{{ eos_token }}",
        ),
    );
    const history = new ChatHistory();
    const turn = history.turn(tok, user(words()), 0);
    const text = ` it was ${rng.int(0, 99)}</think> so`;
    history.commit(tok, turn, { tokens: tok.encode(text, { addSpecialTokens: false }), endsWithEos: false });
    const second = words();
    expect(history.turn(tok, user(second), 1).text).toBe(`</s><|user|>${second}<|assistant|>`);
  });

  test("after a turn of text or ids, a chat turn is its messages alone, without the template's BOS", () => {
    const history = new ChatHistory();
    const turn = history.turn(base, user(words()), 0);
    const r = reply(base);
    history.commit(base, turn, r);
    history.breakOff();
    const later = words();
    expect(history.turn(base, user(later), 1).text).toBe(`<|user|>${later}<|assistant|>`);
    // And on a session that began with text.
    expect(new ChatHistory().turn(base, user(later), 5).text).toBe(`<|user|>${later}<|assistant|>`);
  });

  test("alone, a turn loses the template's BOS only: a BOS token that is also how a message opens stays", () => {
    // ChatML with bos_token "<|im_start|>", as some models ship it: the template writes no BOS.
    const dir = copyFixture("llama-tiny");
    editJson(dir, "tokenizer_config.json", (c) => ({
      ...c,
      bos_token: "<|user|>",
      chat_template:
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}",
    }));
    const tok = Tokenizer.fromDirectory(dir);
    const later = words();
    expect(new ChatHistory().turn(tok, user(later), 5).text).toBe(`<|user|>${later}<|assistant|>`);
    // A template that writes its BOS after an opening of its own loses it there.
    const opening = withTemplate(`<|system|>${template}`);
    expect(new ChatHistory().turn(opening, user(later), 5).text).toBe(`<|system|><|user|>${later}<|assistant|>`);
    // Llama 2's writes one before each user message: the first goes, the later ones stay.
    const llama2 = withTemplate(
      "{% for m in messages %}{% if m['role'] == 'user' %}{{ bos_token }}[INST] {{ m['content'] }} [/INST]{% else %} {{ m['content'] }} {{ eos_token }}{% endif %}{% endfor %}",
    );
    const turns = [...user("a"), { role: "assistant", content: "b" }, ...user("c")];
    expect(new ChatHistory().turn(llama2, turns, 5).text).toBe("[INST] a [/INST] b </s><s>[INST] c [/INST]");
  });

  describe("in a session", () => {
    let model: Model;
    beforeAll(async () => {
      const dir = copyFixture("llama-tiny");
      editJson(dir, "tokenizer_config.json", (c) => ({
        ...c,
        chat_template: `{% if messages[0]['role'] != 'system' %}<|system|>You help.\n{% endif %}${template}`,
      }));
      model = await loadModel(dir, { device: "cpu", kvCacheBytes: 2 ** 22 });
    });
    afterAll(async () => model?.dispose());

    test("turns of chat feed what the conversation adds, and go on as one generation over what they fed", async () => {
      const spy = jest.spyOn(GenerationSequence.prototype, "startPrefill");
      const session = model.createSession();
      const options = { maxNewTokens: rng.int(2, 5), stopAtEos: false };
      try {
        const all: number[] = [];
        for (let t = 0; t < 3; t++) {
          const tokens: number[] = [];
          for await (const chunk of session.generate(user(words()), options)) tokens.push(...chunk.tokens);
          // The session's prefill is the last so far (the one-shot generation below prefills too).
          const ids = spy.mock.calls[spy.mock.calls.length - 1][0];
          all.push(...ids);
          // The system block and the BOS open the conversation once; every turn ends asking for the assistant.
          // A later turn's ids begin with the reply's last token (carried), which may be any token.
          const text = model.tokenizer.decode(ids.slice(t === 0 ? 0 : 1));
          expect([text.includes("<|system|>"), text.includes("<s>"), text.endsWith("<|assistant|>")]).toEqual([t === 0, t === 0, true]);
          expect(tokens).toEqual((await model.generateBatch([all], options))[0].tokens);
          all.push(...tokens.slice(0, -1));
        }
      } finally {
        spy.mockRestore();
        session.dispose();
      }
    });

    test("a reply cut by a stop string is closed by the next turn: the conversation holds the stop string's tokens", async () => {
      const options = { maxNewTokens: rng.int(4, 8), stopAtEos: false };
      // A question whose reply has text to stop in (a reply of special or partial tokens may have none).
      let question = user(words());
      let whole = (await model.generateBatch([question], options))[0];
      for (let tries = 0; whole.text.length < 2 && tries < 20; tries++) {
        question = user(words());
        whole = (await model.generateBatch([question], options))[0];
      }
      // Greedy, so the same reply comes again: stop at its last two characters (the text then ends before them).
      const stop = whole.text.slice(-2);
      const spy = jest.spyOn(GenerationSequence.prototype, "startPrefill");
      const session = model.createSession();
      try {
        let text = "";
        for await (const chunk of session.generate(question, { ...options, stop: [stop] })) text += chunk.text;
        expect(text.endsWith(stop)).toBe(false);
        for await (const _ of session.generate(user(words()), { maxNewTokens: 1 }));
        const next = spy.mock.calls[spy.mock.calls.length - 1][0];
        expect(model.tokenizer.decode(next.slice(1)).startsWith("</s><|user|>")).toBe(true);
      } finally {
        spy.mockRestore();
        session.dispose();
      }
    });
  });
});
