// TextStream: the chunks of a generation's text add up to the decoded ids, and a generation that
// ends before any token was pushed (EOS as its first token) flushes to nothing instead of failing.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Tokenizer } from "../lib";
import { TextStream } from "../lib/generate/text-stream";
import { fixtureRoot } from "./helpers/fixtures";
import { Random } from "./helpers/reference";

const rng = new Random();
const tokenizer = Tokenizer.fromDirectory(path.join(fixtureRoot, "llama-tiny"));

test(`seed ${rng.seed}: pushed chunks and the flush add up to the decoded ids`, () => {
  for (let round = 0; round < 20; round++) {
    const ids = Array.from({ length: rng.int(1, 30) }, () => rng.int(2, 383));
    const stream = new TextStream(tokenizer, []);
    let text = "";
    for (const id of ids) text += stream.push(id).text;
    text += stream.flush();
    expect(text).toBe(tokenizer.decode(ids, { skipSpecialTokens: true }));
  }
});

test("a space the decoder's clean-up drops later (before punctuation and contractions) is never shown", () => {
  for (const sentence of ["one two , three", "it is .", "he said 's ok", "we do n't go ?", "why ! yes"]) {
    const ids = tokenizer.encode(sentence, { addSpecialTokens: false });
    const stream = new TextStream(tokenizer, []);
    const chunks = ids.map((id) => stream.push(id).text);
    const whole = tokenizer.decode(ids, { skipSpecialTokens: true });
    expect(chunks.join("") + stream.flush()).toBe(whole);
    // Every chunk so far is a prefix of the final text: nothing shown is taken back.
    for (let i = 1; i <= chunks.length; i++) expect(whole.startsWith(chunks.slice(0, i).join(""))).toBe(true);
  }
});

// Tokenizers whose decoders differ: byte-level BPE (Llama 3, Qwen2) and metaspace with byte
// fallback, which strips a sequence's leading space (Llama 2, Mistral).
const tokenizerDirs = [
  ["byte-level", path.join(fixtureRoot, "llama-tiny")],
  ["byte-level, 4096 tokens", path.join(__dirname, "..", "models", "demo")],
  ["metaspace", path.join(__dirname, "fixtures", "tokenizers", "metaspace")],
];

/** A directory's tokenizer and how many ids it has (its vocabulary's and added tokens' largest id + 1). */
function tokenizerOf(dir: string): { tok: Tokenizer; vocab: number } {
  const json = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
  const ids = [...Object.values(json.model.vocab as Record<string, number>), ...json.added_tokens.map((t: { id: number }) => t.id)];
  return { tok: Tokenizer.fromDirectory(dir), vocab: Math.max(...ids) + 1 };
}

/** The tokenizer, counting the ids each decode is given. */
function counting(tok: Tokenizer): { tok: Tokenizer; decoded: () => number } {
  let decoded = 0;
  const proxy = Object.create(tok) as Tokenizer;
  proxy.decode = (ids, options) => {
    decoded += ids.length;
    return tok.decode(ids, options);
  };
  return { tok: proxy, decoded: () => decoded };
}

describe.each(tokenizerDirs)(`seed ${rng.seed}: %s`, (_, dir) => {
  const { tok, vocab } = tokenizerOf(dir);

  test("a long generation's chunks add up to the decoded ids, and each push decodes a few tokens, not all of them", () => {
    for (let round = 0; round < 4; round++) {
      // Random ids over the whole vocabulary (byte tokens and special ones among them), and runs
      // of one token, which decoders merge or clean up across token boundaries.
      const ids: number[] = [];
      while (ids.length < 1500) {
        const id = rng.int(0, vocab - 1);
        for (let n = rng.int(0, 3) === 0 ? rng.int(2, 6) : 1; n > 0; n--) ids.push(id);
      }
      const { tok: counted, decoded } = counting(tok);
      const stream = new TextStream(counted, []);
      const whole = tok.decode(ids, { skipSpecialTokens: true });
      let text = "";
      for (const id of ids) {
        text += stream.push(id).text;
        // Nothing shown is taken back.
        expect(whole.startsWith(text)).toBe(true);
      }
      text += stream.flush();
      expect(text).toBe(whole);
      expect(decoded() / ids.length).toBeLessThan(100);
    }
  });

  test("with several stop strings the text ends where the first found begins, whatever their order, as decoding after every token finds it", () => {
    let stopped = 0;
    for (let round = 0; round < 60; round++) {
      const ids = Array.from({ length: rng.int(2, 120) }, () => rng.int(0, vocab - 1));
      const whole = tok.decode(ids, { skipSpecialTokens: true });
      // Stop strings cut from the text itself, so that they are found, and overlapping ones.
      const stops = Array.from({ length: rng.int(2, 4) }, () => {
        const at = rng.int(0, Math.max(0, whole.length - 2));
        return whole.slice(at, at + rng.int(1, 12)) || "x";
      });
      let want = whole;
      for (let i = 1; i <= ids.length; i++) {
        const text = tok.decode(ids.slice(0, i), { skipSpecialTokens: true });
        const found = stops.map((s) => text.indexOf(s)).filter((at) => at >= 0);
        if (found.length) {
          want = text.slice(0, Math.min(...found));
          break;
        }
      }
      const stream = new TextStream(tok, stops);
      let got = "";
      let ended = false;
      for (const id of ids) {
        const { text, stopped: stop } = stream.push(id);
        got += text;
        if (stop) {
          ended = true;
          break;
        }
      }
      if (ended) stopped++;
      else got += stream.flush();
      expect({ round, stops, got }).toEqual({ round, stops, got: want });
    }
    expect(stopped).toBeGreaterThan(20);
  });
});

test("a flush before any push gives no text", () => {
  expect(new TextStream(tokenizer, ["stop"]).flush()).toBe("");
  expect(new TextStream(undefined, []).flush()).toBe("");
});

test("no ids decode to no text", () => {
  expect(tokenizer.decode([])).toBe("");
  expect(tokenizer.decode([], { skipSpecialTokens: true })).toBe("");
});

test(`seed ${rng.seed}: a run of tokens without text before text the clean-up joins to what came before is never shown wrong`, () => {
  // EOS repeated (a generation with stopAtEos false) between "do n" and "'t": the decoder's
  // clean-up joins them across the run, so text before the run may not settle on the run alone.
  const encode = (s: string) => tokenizer.encode(s, { addSpecialTokens: false });
  const eos = tokenizer.tokenId(tokenizer.eosToken!)!;
  for (const [before, after] of [
    ["we do n", "'t go"],
    ["it is ", ". ok"],
    ["a '", " b"],
  ]) {
    const ids = [...encode("x".repeat(rng.int(0, 7))), ...encode(before), ...Array(rng.int(8, 40)).fill(eos), ...encode(after)];
    const whole = tokenizer.decode(ids, { skipSpecialTokens: true });
    const stream = new TextStream(tokenizer, []);
    let shown = "";
    for (const id of ids) {
      shown += stream.push(id).text;
      expect(whole.startsWith(shown)).toBe(true);
    }
    expect(shown + stream.flush()).toBe(whole);
  }
});

/** Streams `text`'s tokens: every push's text so far begins the whole decode, and the flush completes it. */
function expectNeverTakenBack(tok: Tokenizer, text: string): void {
  const ids = tok.encode(text, { addSpecialTokens: false });
  const whole = tok.decode(ids, { skipSpecialTokens: true });
  const stream = new TextStream(tok, []);
  let shown = "";
  for (const id of ids) {
    shown += stream.push(id).text;
    expect({ text, shown: whole.startsWith(shown) }).toEqual({ text, shown: true });
  }
  expect(shown + stream.flush()).toBe(whole);
}

test(`seed ${rng.seed}: " n ' t" shows "n't" with no space taken back (the clean-up chains " ' " and " n't")`, () => {
  const words = ["I", "do", "n", "'", "t", "know", "it", "'", "s", ".", "we"];
  for (let round = 0; round < 20; round++)
    expectNeverTakenBack(tokenizer, ["I do n ' t know", ...Array.from({ length: rng.int(1, 8) }, () => rng.pick(words))].join(" "));
});

test("text of characters that take several byte tokens each settles: a token decodes a few ids, not the whole text", () => {
  const demo = Tokenizer.fromDirectory(path.join(__dirname, "..", "models", "demo"));
  const ids = demo.encode("我们今天去公园散步吧天气很好。".repeat(120), { addSpecialTokens: false }).slice(0, 2000);
  const { tok, decoded } = counting(demo);
  const stream = new TextStream(tok, []);
  let text = "";
  for (const id of ids) text += stream.push(id).text;
  expect(text + stream.flush()).toBe(demo.decode(ids, { skipSpecialTokens: true }));
  expect(decoded() / ids.length).toBeLessThan(100);
});

/** A temporary copy of `dir`'s tokenizer whose config turns the decoder's space clean-up off. */
function withoutCleanUp(dir: string): Tokenizer {
  const copy = fs.mkdtempSync(path.join(os.tmpdir(), "lt-no-clean-up-"));
  fs.copyFileSync(path.join(dir, "tokenizer.json"), path.join(copy, "tokenizer.json"));
  const config = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8"));
  fs.writeFileSync(path.join(copy, "tokenizer_config.json"), JSON.stringify({ ...config, clean_up_tokenization_spaces: false }));
  try {
    return Tokenizer.fromDirectory(copy);
  } finally {
    fs.rmSync(copy, { recursive: true });
  }
}

test.each(tokenizerDirs)(
  `seed ${rng.seed}: without the decoder's clean-up (%s) each token's text comes out with it, not a token late`,
  (_name, dir) => {
    const tok = withoutCleanUp(dir);
    expect(tok.cleansUpSpaces).toBe(false);
    expect(Tokenizer.fromDirectory(dir).cleansUpSpaces).toBe(true);
    const words = ["one", "two", "three", ",", ".", "'", "n't", "s", "go"];
    const sentence = Array.from({ length: rng.int(4, 12) }, () => words[rng.int(0, words.length - 1)]).join(" ");
    const ids = tok.encode(sentence, { addSpecialTokens: false });
    const stream = new TextStream(tok, []);
    const chunks = ids.map((id) => stream.push(id).text);
    // Every ASCII token is whole, so the text after i + 1 tokens is the decode of those tokens.
    for (let i = 0; i < ids.length; i++)
      expect({ sentence, shown: chunks.slice(0, i + 1).join("") }).toEqual({
        sentence,
        shown: tok.decode(ids.slice(0, i + 1), { skipSpecialTokens: true }),
      });
    expect(chunks.join("") + stream.flush()).toBe(tok.decode(ids, { skipSpecialTokens: true }));
  },
);

describe.each(tokenizerDirs)(`seed ${rng.seed}: with the decoder's clean-up (%s)`, (_name, dir) => {
  const tok = Tokenizer.fromDirectory(dir);

  test("text made of the clean-up's own pieces, in any order and spacing, is never taken back", () => {
    expect(tok.cleansUpSpaces).toBe(true);
    const pieces = [".", "?", "!", ",", "'", "n", "n't", "'t", "t", "'s", "s", "'m", "m", "'ve", "ve", "'re", "re", "the", "x", ":"];
    for (let round = 0; round < 150; round++)
      expectNeverTakenBack(tok, Array.from({ length: rng.int(1, 14) }, () => rng.pick(["", " ", " ", "  "]) + rng.pick(pieces)).join(""));
  });

  test("a word no clean-up rule takes comes out with its token, not a token late", () => {
    const words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog"];
    const sentence = Array.from({ length: rng.int(3, 10) }, () => rng.pick(words)).join(" ");
    const ids = tok.encode(sentence, { addSpecialTokens: false });
    const stream = new TextStream(tok, []);
    let shown = "";
    for (let i = 0; i < ids.length; i++) {
      shown += stream.push(ids[i]).text;
      // A space alone at the end waits (punctuation may follow), where a small vocabulary splits it off its word.
      const decoded = tok.decode(ids.slice(0, i + 1), { skipSpecialTokens: true });
      expect({ sentence, shown }).toEqual({ sentence, shown: decoded.endsWith(" ") ? decoded.slice(0, -1) : decoded });
    }
  });
});
