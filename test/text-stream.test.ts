// TextStream: the chunks of a generation's text add up to the decoded ids, and a generation that
// ends before any token was pushed (EOS as its first token) flushes to nothing instead of failing.
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

test("a flush before any push gives no text", () => {
  expect(new TextStream(tokenizer, ["stop"]).flush()).toBe("");
  expect(new TextStream(undefined, []).flush()).toBe("");
});

test(`seed ${rng.seed}: with several stop strings the text ends where the first found begins, whatever their order`, () => {
  let stopped = 0;
  for (let round = 0; round < 200; round++) {
    const ids = Array.from({ length: rng.int(2, 30) }, () => rng.int(2, 383));
    const whole = tokenizer.decode(ids, { skipSpecialTokens: true });
    // Stop strings cut from the text itself, so that they are found, and overlapping ones.
    const stops = Array.from({ length: rng.int(2, 4) }, () => {
      const at = rng.int(0, Math.max(0, whole.length - 2));
      return whole.slice(at, at + rng.int(1, 4)) || "x";
    });
    // Reference: decode after every token; the first prefix holding a stop ends at its earliest one.
    let want = whole;
    for (let i = 1; i <= ids.length; i++) {
      const text = tokenizer.decode(ids.slice(0, i), { skipSpecialTokens: true });
      const found = stops.map((s) => text.indexOf(s)).filter((at) => at >= 0);
      if (found.length) {
        want = text.slice(0, Math.min(...found));
        break;
      }
    }
    const stream = new TextStream(tokenizer, stops);
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
    expect({ round, ids, stops, got }).toEqual({ round, ids, stops, got: want });
  }
  expect(stopped).toBeGreaterThan(100);
});
