// The evaluation's inputs: the Brown corpus as plain English, and the task samples written with a
// fixture model's tokenizer — prompt length, where the needles are, the answer and its tokens,
// determinism per seed, the chat template — and the exact-match check of answers.
import * as path from "node:path";
import {
  brownCorpus,
  type Corpus,
  isCorrect,
  makeSample,
  rulerScore,
  scoreAnswer,
  type TaskName,
  type TaskSample,
  Tokenizer,
  taskNames,
} from "../lib";
import { brownSentences } from "../lib/eval/corpus";
import { longestFillerWord } from "./helpers/filler-words";
import { fixtureRoot } from "./helpers/fixtures";
import { Random } from "./helpers/reference";

const rng = new Random();

const tokenizer = Tokenizer.fromDirectory(path.join(fixtureRoot, "llama-tiny"));
const corpus = brownCorpus();

/** Fresh on every run, from the generator whose seed names the tests. */
const randomSeed = () => rng.int(0, 999_999);
const randomDepth = () => rng.next();

describe(`seed ${rng.seed}`, () => {
  describe("the Brown corpus", () => {
    test("tags are dropped and tokens joined into text: quotes, punctuation and contractions", () => {
      const doc =
        "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, didn't/md* it/pps ?/.\n\tIt's/pps+bez $50/nns (/( or/cc so/rb )/) ./.\n";
      expect(brownSentences(doc)).toEqual(['The jury said "no evidence", didn\'t it?', "It's $50 (or so)."]);
    });

    test("450 filler documents and 50 held out, of running text with no tags and few repeats", () => {
      expect(corpus.filler).toHaveLength(450);
      expect(corpus.heldOut).toHaveLength(50);
      const sentences = corpus.filler.flat();
      expect(sentences.length).toBeGreaterThan(40000);
      // No part-of-speech tag is left ("word/nn"; "and/or" is the text's own).
      expect(sentences.filter((s) => /\w\/(at|nn|nns|np|vb|vbd|vbz|in|jj|cc|rb|cs|pps)\b/.test(s))).toHaveLength(0);
      // Real text, not one sentence repeated: nearly all sentences are distinct.
      expect(new Set(sentences).size / sentences.length).toBeGreaterThan(0.97);
      // The held-out documents are none of the filler's.
      const filler = new Set(corpus.filler.map((d) => d.join(" ")));
      for (const doc of corpus.heldOut) expect(filler.has(doc)).toBe(false);
    });
  });

  /** The corpus cut to sentences of at most `chars` characters, so a needle's position is known to within one short sentence. */
  function shortSentences(chars: number): Corpus {
    return { filler: corpus.filler.map((d) => d.filter((s) => s.length <= chars)).filter((d) => d.length > 0), heldOut: corpus.heldOut };
  }

  const tokensOf = (text: string) => tokenizer.encode(text, { addSpecialTokens: false }).length;

  describe.each(taskNames.map((t) => [t]))("%s samples", (task: TaskName) => {
    const short = shortSentences(80);
    // The longest filler sentence of the short corpus, in tokens as the haystack holds it.
    const longestSentence = Math.max(...short.filler.flat().map((s) => tokensOf(` ${s}`)));

    test.each([[384], [1024], [3000]])("context %i: length, needles, depth and answer", (context) => {
      const spec = { task, context, depth: randomDepth(), seed: randomSeed() };
      const what = JSON.stringify(spec);
      const sample = makeSample(tokenizer, short, spec, { chat: false });
      // Filler stops at the last whole word that fits what the instructions and needles leave, and
      // this byte-level tokenizer splits text at spaces, so the pieces' token counts add up: the
      // prompt falls short of the context by less than one word.
      const shortfall = longestFillerWord(tokenizer, short);
      expect([what, sample.prompt.length <= context && sample.prompt.length > context - shortfall]).toEqual([what, true]);
      expect(sample.prompt[0]).toBe(tokenizer.encode("x")[0]);

      const answering = sample.needles.filter((n) => n.answering);
      expect(answering).toHaveLength(1);
      let needleTokensBefore = 0;
      for (const needle of sample.needles) {
        // The needle's tokens start where the sample says.
        expect(tokenizer.decode(sample.prompt.slice(needle.token))).toMatch(
          new RegExp(`^ ${needle.text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`),
        );
        // Its depth is the filler before it (its token offset less the haystack's start and the needles before it).
        const fillerBefore = needle.token - sample.haystack.start - needleTokensBefore;
        expect(Math.abs(needle.depthReached * sample.fillerTokens - fillerBefore)).toBeLessThan(1e-6);
        needleTokensBefore += tokensOf(` ${needle.text}`);
      }
      expect(sample.haystack.end - sample.haystack.start).toBe(sample.fillerTokens + needleTokensBefore);
      // Needles go in at the sentence boundary nearest the depth: within half a sentence of it.
      const [needle] = answering;
      if (!(Math.abs(needle.depthReached - spec.depth) * sample.fillerTokens <= longestSentence / 2))
        throw new Error(
          `${what}: needle at depth ${needle.depthReached} of ${sample.fillerTokens} filler tokens, sentences up to ${longestSentence}`,
        );

      // The prompt is its text's tokens, and the answer's tokens are those that follow it.
      expect(tokenizer.encode(sample.text)).toEqual(sample.prompt);
      expect(tokenizer.encode(`${sample.text} ${sample.answer}`)).toEqual([...sample.prompt, ...sample.answerIds]);
      expectAnswerFromNeedles(sample);
    });

    test("the same spec gives the same sample; another seed another", () => {
      const spec = { task, context: 700, depth: randomDepth(), seed: randomSeed() };
      const a = makeSample(tokenizer, corpus, spec, { chat: false });
      expect(makeSample(tokenizer, corpus, spec, { chat: false })).toEqual(a);
      expect(makeSample(tokenizer, corpus, { ...spec, seed: spec.seed + 1 }, { chat: false }).prompt).not.toEqual(a.prompt);
    });

    test("at the model's max_position_embeddings the haystack makes room for the answer; the task text stays", () => {
      const context = rng.int(600, 1200);
      // At least the tokens a prompt may fall short of its context (one word), so the limit always cuts.
      const shortfall = longestFillerWord(tokenizer, corpus);
      const extraTokens = rng.int(shortfall, shortfall + 40);
      const spec = { task, context, depth: randomDepth(), seed: randomSeed() };
      const what = JSON.stringify({ ...spec, extraTokens });
      const free = makeSample(tokenizer, corpus, spec, { chat: false });
      const fitted = makeSample(tokenizer, corpus, spec, { chat: false, maxPositions: context, extraTokens });
      const used = fitted.prompt.length + fitted.answerIds.length + extraTokens;
      expect([what, used <= context, used > context - shortfall]).toEqual([what, true, true]);
      expect(fitted.prompt.length).toBeLessThan(free.prompt.length);
      // The same needles and answer; needles that shared a sentence boundary may part and change order.
      const sorted = (s: TaskSample) => [s.needles.map((n) => n.text).sort(), [...s.references].sort()];
      expect([sorted(fitted), fitted.context]).toEqual([sorted(free), context]);
      if (task !== "niah-multivalue") expect(fitted.answer).toBe(free.answer);
      // Room to spare changes nothing.
      const roomy = makeSample(tokenizer, corpus, spec, {
        chat: false,
        maxPositions: free.prompt.length + free.answerIds.length + extraTokens,
        extraTokens,
      });
      expect(roomy).toEqual(free);
    });

    test("chat: the instructions, haystack and question as a user message, the answer prefix after the template", () => {
      const spec = { task, context: 800, depth: randomDepth(), seed: randomSeed() };
      const sample = makeSample(tokenizer, corpus, spec, { chat: true });
      const { text } = sample;
      expect(tokenizer.encode(text, { addSpecialTokens: false })).toEqual(sample.prompt);
      const rendered = tokenizer.applyChatTemplate([{ role: "user", content: "X" }], { addGenerationPrompt: true });
      const [head] = rendered.split("X");
      expect(text.startsWith(head)).toBe(true);
      expect(sample.prompt.length).toBeLessThanOrEqual(800);
      expect(sample.prompt.length).toBeGreaterThan(800 - longestFillerWord(tokenizer, corpus));
      expectAnswerFromNeedles(sample);
    });
  });

  /** The answer is what the needles say, read back from the prompt's text. */
  function expectAnswerFromNeedles(sample: TaskSample): void {
    const { text } = sample;
    const inOrder = [...sample.needles].sort((a, b) => a.token - b.token);
    for (const n of inOrder) expect(text).toContain(n.text);
    const numbers = (s: string) => s.match(/\d+/g) ?? [];
    switch (sample.task) {
      case "passkey":
        expect(numbers(inOrder[0].text)[0]).toBe(sample.answer);
        break;
      case "niah-multikey": {
        const needle = sample.needles.find((n) => n.answering)!;
        expect(needle.text.endsWith(`is: ${sample.answer}.`)).toBe(true);
        const key = /numbers for (\w+) is/.exec(needle.text)![1];
        expect(text).toContain(`What is the special magic number for ${key} mentioned`);
        // Distractors have other keys.
        expect(sample.needles.filter((n) => n.text.includes(`for ${key} is`))).toHaveLength(1);
        break;
      }
      case "niah-multivalue":
        expect(sample.answer).toBe(inOrder.map((n) => numbers(n.text)[0]).join(", "));
        break;
      case "variable-tracking": {
        // Follow the chain from the value, as the question asks.
        const value = /assigned the value (\d+)/.exec(text)![1];
        const names: string[] = [];
        let target = value;
        for (;;) {
          const next = inOrder.find((n) => n.text.endsWith(` = ${target}.`));
          if (!next) break;
          const name = /^VAR (\w+)/.exec(next.text)![1];
          names.push(name);
          target = `VAR ${name}`;
        }
        expect(sample.answer).toBe(names.join(" "));
        expect(names).toHaveLength(sample.needles.length);
        break;
      }
    }
  }

  test("with a tokenizer that writes ▁ before its whole input (as Llama 2 and Mistral do), prompts still fill the context", () => {
    // Such a tokenizer gives a sentence on its own (" s") one token more than the sentence takes
    // inside the haystack; counted that way, every filler sentence would leave a token unused.
    const metaspace = Tokenizer.fromDirectory(path.join(__dirname, "fixtures", "tokenizers", "metaspace"));
    const short = shortSentences(80);
    const longestWord = longestFillerWord(metaspace, short);
    for (const task of taskNames)
      for (const context of [1024, 3000]) {
        const spec = { task, context, depth: randomDepth(), seed: randomSeed() };
        const sample = makeSample(metaspace, short, spec, { chat: false });
        expect(metaspace.encode(sample.text)).toEqual(sample.prompt);
        // Short of the context by less than the word that did not fit.
        const what = `${JSON.stringify(spec)}: ${sample.prompt.length} tokens, words up to ${longestWord}`;
        expect([what, sample.prompt.length <= context && sample.prompt.length > context - longestWord]).toEqual([what, true]);
      }
  });

  test("a context too short for the instructions and needles is an error saying how long they are", () => {
    expect(() => makeSample(tokenizer, corpus, { task: "niah-multikey", context: 100, depth: 0.5, seed: 1 }, { chat: false })).toThrow(
      /context 100 is too short for niah-multikey: its instructions, question and needles take \d+ tokens/,
    );
  });

  test("a bad task, context, depth or seed is a RangeError naming the field and the value", () => {
    const good = { task: rng.pick(taskNames), context: rng.int(400, 800), depth: randomDepth(), seed: randomSeed() };
    const outside = rng.int(2, 9);
    const cases: Array<[Partial<Record<keyof typeof good, unknown>>, RegExp]> = [
      [{ task: `nope-${outside}` }, new RegExp(`task must be one of passkey, .*, got "nope-${outside}"`)],
      [{ task: undefined }, /task must be one of .*, got undefined/],
      [{ context: Number.NaN }, /context \(prompt tokens\) must be an integer in \[1, \d+\], got NaN/],
      [{ context: -outside }, new RegExp(`context \\(prompt tokens\\) must be an integer in \\[1, \\d+\\], got -${outside}`)],
      [{ context: good.context + 0.5 }, /context \(prompt tokens\) must be an integer/],
      [{ context: String(good.context) }, new RegExp(`context \\(prompt tokens\\) must be an integer .*, got "${good.context}"`)],
      [{ depth: outside }, new RegExp(`depth must be a number in \\[0, 1\\] .*, got ${outside}`)],
      [{ depth: -rng.next() - 1e-9 }, /depth must be a number in \[0, 1\] .*, got -0?\.?\d/],
      [{ depth: Number.NaN }, /depth must be a number in \[0, 1\] .*, got NaN/],
      [{ seed: Number.NaN }, /seed must be an integer .*, got NaN/],
      [{ seed: good.seed + 0.5 }, new RegExp(`seed must be an integer .*, got ${good.seed}\\.5`)],
      [{ seed: 2 ** 53 }, /seed must be an integer of at most 2\^53 - 1 in magnitude, got 9007199254740992/],
    ];
    for (const [change, message] of cases) {
      const spec = { ...good, ...change } as unknown as Parameters<typeof makeSample>[2];
      expect(() => makeSample(tokenizer, corpus, spec, { chat: false })).toThrow(RangeError);
      expect(() => makeSample(tokenizer, corpus, spec, { chat: false })).toThrow(message);
    }
    expect(() => makeSample(tokenizer, corpus, null as unknown as Parameters<typeof makeSample>[2], { chat: false })).toThrow(
      /makeSample: spec must be an object/,
    );
    // The edges are samples.
    for (const depth of [0, 1]) expect(makeSample(tokenizer, corpus, { ...good, depth }, { chat: false }).depth).toBe(depth);
  });

  test("needles meeting at one sentence boundary go in no fixed order: the answering one is not always first", () => {
    // At depth 0 the answering needle sits at the first boundary; in a short haystack other
    // needles often land there too. Whether it comes first among them must vary with the seed.
    const firstInRun: boolean[] = [];
    const from = randomSeed();
    for (let seed = from; firstInRun.length < 40 && seed < from + 400; seed++) {
      const sample = makeSample(tokenizer, corpus, { task: "niah-multikey", context: 400, depth: 0, seed }, { chat: false });
      const run = sample.needles.filter((n) => n.depthReached === 0);
      if (run.length > 1) firstInRun.push(run[0].answering);
    }
    expect(new Set(firstInRun)).toEqual(new Set([true, false]));
  });

  test("max_position_embeddings too close for the instructions, needles and answer is an error saying so", () => {
    const spec = { task: "niah-multikey" as const, context: 400, depth: 0.5, seed: rng.int(0, 999) };
    expect(() => makeSample(tokenizer, corpus, spec, { chat: false, maxPositions: 400, extraTokens: 380 })).toThrow(
      /context 400 leaves -?\d+ tokens for niah-multikey's prompt within max_position_embeddings 400, and its instructions, question and needles take \d+/,
    );
    expect(() => makeSample(tokenizer, corpus, { ...spec, context: 401 }, { chat: false, maxPositions: 400 })).toThrow(
      /context 401 is beyond the model's max_position_embeddings \(400\): ask for 400 tokens or fewer/,
    );
  });

  describe("isCorrect: exact match at the start of the greedy continuation", () => {
    test.each([
      [" 68142. The pass key", "68142", true],
      ["68142", "68142", true],
      ["\n 68142\n", "68142", true],
      [" 681425", "68142", false],
      [" 6814", "68142", false],
      [" The pass key is 68142", "68142", false],
      [" ABCDE FGHIJ KLMNO.", "ABCDE FGHIJ KLMNO", true],
      [" ABCDE FGHIJ", "ABCDE FGHIJ KLMNO", false],
      [" 1, 2, 3.", "1, 2, 3", true],
      [" 1, 2, 35", "1, 2, 3", false],
    ])("%j answers %j: %p", (continuation, answer, want) => {
      expect(isCorrect(continuation, answer)).toBe(want);
    });
  });

  describe("rulerScore: the share of the references anywhere in the continuation, as RULER's string_match_all", () => {
    test.each([
      [" 68142. The pass key", ["68142"], 1],
      [" The pass key is 68142", ["68142"], 1],
      [" 6814", ["68142"], 0],
      [" abcde FGHIJ", ["ABCDE", "FGHIJ", "KLMNO"], 2 / 3],
      [" 3, 1 and 2", ["1", "2", "3"], 1],
      [" 12, 45", ["123", "45", "678", "9"], 1 / 4],
      ["", ["1"], 0],
    ])("%j with %j: %p", (continuation, references, want) => {
      expect(rulerScore(continuation, references)).toBeCloseTo(want, 12);
    });

    test("scoreAnswer scores a sample's output both ways: the whole answer first, or its parts anywhere", () => {
      for (const task of ["niah-multivalue", "variable-tracking"] as const) {
        const sample = makeSample(tokenizer, corpus, { task, context: 700, depth: rng.next(), seed: rng.int(0, 1000) }, { chat: false });
        const [a, b, c, d] = sample.references;
        expect(scoreAnswer(sample, ` ${sample.answer}.`)).toEqual({ correct: true, rulerScore: 1 });
        // two of the four, out of order: no exact match, half the credit
        expect(scoreAnswer(sample, ` ${c} and then ${a}`)).toEqual({ correct: false, rulerScore: 0.5 });
        // all four, reordered
        expect(scoreAnswer(sample, ` ${d} ${c} ${b} ${a}`)).toEqual({ correct: false, rulerScore: 1 });
      }
    });

    test("no references is an error", () => {
      expect(() => rulerScore(" 1", [])).toThrow(/at least one reference/);
    });

    test("each task's references are its answer's parts: the number, the values in text order, the chain", () => {
      for (const task of taskNames) {
        const seed = rng.int(0, 1000);
        const sample = makeSample(tokenizer, corpus, { task, context: 700, depth: rng.next(), seed }, { chat: false });
        if (task === "niah-multivalue") expect(sample.references.join(", ")).toBe(sample.answer);
        else if (task === "variable-tracking") expect(sample.references.join(" ")).toBe(sample.answer);
        else expect(sample.references).toEqual([sample.answer]);
        // The answer itself scores 1 by both rules.
        expect(rulerScore(` ${sample.answer}.`, sample.references)).toBe(1);
        expect(isCorrect(` ${sample.answer}.`, sample.answer)).toBe(true);
      }
    });
  });
});
