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

test("a flush before any push gives no text", () => {
  expect(new TextStream(tokenizer, ["stop"]).flush()).toBe("");
  expect(new TextStream(undefined, []).flush()).toBe("");
});
