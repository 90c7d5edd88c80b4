// RULER-style retrieval tasks over real English filler, written with the model's own tokenizer so
// a prompt has the asked-for token length: passkey, multi-key and multi-value needle-in-a-haystack,
// and variable tracking. The needle that answers the question sits at the asked-for depth of the
// haystack; distractors and further needles at seeded random depths. Everything is a function of
// (task, context, depth, seed), so every mode sees the same prompts.
import type { Tokenizer } from "../checkpoint/tokenizer";
import { integerIn, maxTokens, optionsObject, show } from "../common/validate";
import type { Corpus } from "./corpus";
import { randomInt, seededRandom } from "./random";

/**
 * The retrieval tasks makeSample writes: every TaskName.
 * @example const samples = taskNames.map((task) => makeSample(model.tokenizer, corpus, { task, context: 4096, depth: 0.5, seed: 0 }, { chat: false }));
 */
export const taskNames = ["passkey", "niah-multikey", "niah-multivalue", "variable-tracking"] as const;
/** An evaluation task: passkey retrieval, multi-key or multi-value needles, variable tracking. */
export type TaskName = (typeof taskNames)[number];

/** Which sample: a task at a prompt length, needle depth (0: start of the haystack, 1: end) and seed. */
export interface SampleSpec {
  task: TaskName;
  /** Prompt tokens asked for. */
  context: number;
  depth: number;
  seed: number;
}

/** One evaluation prompt with its hidden answer. */
export interface TaskSample extends SampleSpec {
  /** The prompt's text (special tokens in it only as the chat template writes them). */
  text: string;
  /** The prompt's token ids: the model's tokenizer, with its special tokens (and chat template when used). */
  prompt: number[];
  /** The text a correct greedy continuation starts with (after its leading space). */
  answer: string;
  /** The strings RULER's string match looks for in the continuation (rulerScore): each number or name of the answer. */
  references: string[];
  /** The tokens of " " + answer as they follow the prompt. */
  answerIds: number[];
  /** Token offsets in `prompt` of the haystack's start and end ... */
  haystack: { start: number; end: number };
  /**
   * ... and of each needle's start, in the order they appear; `answering` marks the one placed at
   * `depth`, and `depthReached` is the share of the filler's tokens before it (needles go in
   * between sentences, so this is the sentence boundary nearest the depth asked for).
   */
  needles: Array<{ text: string; token: number; answering: boolean; depthReached: number }>;
  /** Tokens of filler in the haystack (needles not counted). */
  fillerTokens: number;
}

/** What a task writes before the filler, hides in it, asks after it, and expects. */
interface TaskText {
  intro: string;
  /** `value`: what the needle adds to an answer that lists the needles in the order they appear. */
  needles: Array<{ text: string; depth: number; answering: boolean; value?: string }>;
  question: string;
  /** Written after the question (after the chat template's assistant turn, with one): the answer follows it. */
  answerPrefix: string;
  /** The answer, or undefined when it lists the needles' values in the order they appear. */
  answer: string | undefined;
  /** The answer's parts for rulerScore, or undefined for the needles' values. */
  references: string[] | undefined;
  /** Needles that meet at one sentence boundary keep their index order (a chain whose links refer to earlier ones). */
  chained?: boolean;
}

/** Options of makeSample. */
export interface SampleOptions {
  /** Wrap the instructions, haystack and question as a user message with the chat template. */
  chat: boolean;
  /**
   * The model's max_position_embeddings: the prompt, its answer and `extraTokens` more stay within
   * it. A context that reaches it gets a haystack shorter by what the answer needs, as RULER sizes
   * its prompts; the needles, their depths and the answer's parts stay those of the context asked
   * for (needles that shared a sentence boundary may part, and a multi-value answer then lists its
   * values in their new order). A context above it is a RangeError.
   */
  maxPositions?: number;
  /** Tokens a model may write beyond the answer (with maxPositions; default 0). */
  extraTokens?: number;
}

/**
 * One sample of a task: its prompt (token ids of the model's tokenizer, `context` tokens give or
 * take the last filler word, fewer where `maxPositions` asks) and the answer. A task not in
 * taskNames, a context that is no positive integer or too short for the task's instructions and
 * needles, a depth outside [0, 1] or a seed that is no safe integer is a RangeError.
 * @example
 * const sample = makeSample(model.tokenizer, brownCorpus(), { task: "passkey", context: 4096, depth: 0.5, seed: 0 }, { chat: false });
 * const [out] = await model.generateBatch([sample.prompt], { maxNewTokens: sample.answerIds.length + 4 });
 */
export function makeSample(tokenizer: Tokenizer, corpus: Corpus, spec: SampleSpec, options: SampleOptions): TaskSample {
  checkSpec(spec);
  if (options.maxPositions !== undefined && spec.context > options.maxPositions)
    throw new RangeError(
      `context ${spec.context} is beyond the model's max_position_embeddings (${options.maxPositions}): ask for ${options.maxPositions} tokens or fewer`,
    );
  // The same seed for every try, so a shortened prompt keeps its task text and only loses filler.
  for (let room = spec.context; ; ) {
    const random = seededRandom(`${spec.task}|${spec.context}|${spec.depth}|${spec.seed}`);
    const text = taskText(spec, random, corpus);
    const { pieces, fillerTokens } = fill(tokenizer, corpus, random, text, spec, room, options);
    const sample = assemble(tokenizer, spec, text, pieces, fillerTokens, options);
    const over =
      options.maxPositions === undefined
        ? 0
        : sample.prompt.length + sample.answerIds.length + (options.extraTokens ?? 0) - options.maxPositions;
    if (over <= 0) return sample;
    room -= over;
  }
}

/** The spec's fields checked, so that a bad one is not a TypeError deep inside or a quietly odd prompt. */
function checkSpec(value: SampleSpec): void {
  const spec = optionsObject(value, "makeSample: spec");
  if (!taskNames.includes(spec.task))
    throw new RangeError(`makeSample: task must be one of ${taskNames.join(", ")}, got ${show(spec.task)}`);
  integerIn(spec.context, "makeSample: context (prompt tokens)", 1, maxTokens);
  if (typeof spec.depth !== "number" || !(spec.depth >= 0 && spec.depth <= 1))
    throw new RangeError(`makeSample: depth must be a number in [0, 1] (0: start of the haystack, 1: its end), got ${show(spec.depth)}`);
  // Safe integers, as eval's seeds: a fraction or NaN would quietly name a sample of its own, and
  // beyond 2^53 neighbouring seeds are one number.
  if (!Number.isSafeInteger(spec.seed))
    throw new RangeError(`makeSample: seed must be an integer of at most 2^53 - 1 in magnitude, got ${show(spec.seed)}`);
}

const keyWordsByCorpus = new WeakMap<Corpus, string[]>();

/**
 * The words multi-key and multi-value keys are drawn from: the corpus filler's distinct lowercase
 * words of 7 to 10 letters, sorted.
 *
 * @example
 * const words = keyWords(brownCorpus()); // ["abandon", "abandoned", ...]
 */
export function keyWords(corpus: Corpus): string[] {
  let words = keyWordsByCorpus.get(corpus);
  if (!words) {
    words = [...new Set(corpus.filler.flatMap((doc) => doc.flatMap((s) => s.split(/\s+/))).filter((w) => /^[a-z]{7,10}$/.test(w)))].sort();
    keyWordsByCorpus.set(corpus, words);
  }
  return words;
}

/** `count` distinct key words. */
function keys(corpus: Corpus, random: () => number, count: number): string[] {
  const pool = keyWords(corpus);
  const chosen = new Set<string>();
  while (chosen.size < count) chosen.add(pool[randomInt(random, 0, pool.length - 1)]);
  return [...chosen];
}

function distinctNumbers(random: () => number, count: number, digits: number): number[] {
  const chosen = new Set<number>();
  while (chosen.size < count) chosen.add(randomInt(random, 10 ** (digits - 1), 10 ** digits - 1));
  return [...chosen];
}

function upperName(random: () => number): string {
  return Array.from({ length: 5 }, () => String.fromCharCode(65 + randomInt(random, 0, 25))).join("");
}

/** Needles and distractors beside the answering one. */
const extraNeedles = 3;

function taskText({ task, depth }: SampleSpec, random: () => number, corpus: Corpus): TaskText {
  const anywhere = () => random();
  switch (task) {
    case "passkey": {
      const [key] = distinctNumbers(random, 1, 5);
      return {
        intro:
          "There is an important piece of information hidden inside a lot of irrelevant text. Find it and memorize it. I will quiz you about it.",
        needles: [{ text: `The pass key is ${key}. Remember it. ${key} is the pass key.`, depth, answering: true }],
        question: "What is the pass key?",
        answerPrefix: "The pass key is",
        answer: String(key),
        references: [String(key)],
      };
    }
    case "niah-multikey": {
      const words = keys(corpus, random, extraNeedles + 1);
      const values = distinctNumbers(random, extraNeedles + 1, 7);
      const needle = (i: number) => `One of the special magic numbers for ${words[i]} is: ${values[i]}.`;
      return {
        intro:
          "Some special magic numbers are hidden within the following text. Make sure to memorize them. I will quiz you about the numbers afterwards.",
        needles: words.map((_, i) => ({ text: needle(i), depth: i === 0 ? depth : anywhere(), answering: i === 0 })),
        question: `What is the special magic number for ${words[0]} mentioned in the provided text?`,
        answerPrefix: `The special magic number for ${words[0]} mentioned in the provided text is`,
        answer: String(values[0]),
        references: [String(values[0])],
      };
    }
    case "niah-multivalue": {
      const [word] = keys(corpus, random, 1);
      const values = distinctNumbers(random, extraNeedles + 1, 7);
      const needles = values.map((v, i) => ({
        text: `One of the special magic numbers for ${word} is: ${v}.`,
        depth: i === 0 ? depth : anywhere(),
        answering: i === 0,
        value: String(v),
      }));
      return {
        intro:
          "Some special magic numbers are hidden within the following text. Make sure to memorize them. I will quiz you about the numbers afterwards.",
        needles,
        question: `What are all the special magic numbers for ${word} mentioned in the provided text?`,
        answerPrefix: `The special magic numbers for ${word} mentioned in the provided text are`,
        answer: undefined,
        references: undefined,
      };
    }
    case "variable-tracking": {
      const names = new Set<string>();
      while (names.size < extraNeedles + 1) names.add(upperName(random));
      const chain = [...names];
      const [value] = distinctNumbers(random, 1, 5);
      // The first assignment at `depth`, the rest of the chain after it.
      const later = Array.from({ length: extraNeedles }, () => depth + (1 - depth) * random()).sort((a, b) => a - b);
      return {
        intro: "Memorize and track the chain(s) of variable assignment hidden in the following text.",
        needles: chain.map((name, i) => ({
          text: i === 0 ? `VAR ${name} = ${value}.` : `VAR ${name} = VAR ${chain[i - 1]}.`,
          depth: i === 0 ? depth : later[i - 1],
          answering: i === 0,
        })),
        question: `Question: Find all variables that are assigned the value ${value} in the text above.`,
        answerPrefix: `Answer: According to the chain(s) of variable assignment in the text above, ${chain.length} variables are assigned the value ${value}, they are:`,
        answer: chain.join(" "),
        references: chain,
        chained: true,
      };
    }
  }
}

/** The prompt's text around a haystack, and where in it the haystack is. */
function wrap(tokenizer: Tokenizer, text: TaskText, haystack: string, options: SampleOptions): { text: string; at: number } {
  const content = `${text.intro}${haystack}\n\n${text.question}`;
  const before = options.chat ? tokenizer.applyChatTemplate([{ role: "user", content }], { addGenerationPrompt: true }) : `${content}\n\n`;
  const full = `${before}${text.answerPrefix}`;
  const at = full.indexOf(haystack);
  return { text: full, at };
}

const encodePrompt = (tokenizer: Tokenizer, text: string, options: SampleOptions) =>
  tokenizer.encode(text, { addSpecialTokens: !options.chat });

/** A piece of the haystack: filler (a sentence or its first words) or a needle, written after a space. */
interface Piece {
  text: string;
  /** Filler tokens before this piece. */
  fillerBefore: number;
  needle?: TaskText["needles"][number];
}

/**
 * Filler sentences, from a seeded place in the corpus onwards, whose tokens (each written after a
 * space, as in the haystack) fill what the instructions and needles leave of `context`; the last
 * one cut at a word. Needles go in at the sentence boundary nearest their depth.
 */
function fill(
  tokenizer: Tokenizer,
  corpus: Corpus,
  random: () => number,
  text: TaskText,
  spec: SampleSpec,
  room: number,
  options: SampleOptions,
): { pieces: Piece[]; fillerTokens: number } {
  const needlesOnly = text.needles.map((n) => ` ${n.text}`).join("");
  const fixed = encodePrompt(tokenizer, wrap(tokenizer, text, needlesOnly, options).text, options).length;
  const budget = room - fixed;
  if (budget < 0)
    throw new RangeError(
      room === spec.context
        ? `context ${spec.context} is too short for ${spec.task}: its instructions, question and needles take ${fixed} tokens. Ask for a longer context`
        : `context ${spec.context} leaves ${room} tokens for ${spec.task}'s prompt within max_position_embeddings ${options.maxPositions}, and its instructions, question and needles take ${fixed}. Ask for a shorter context or fewer extra tokens`,
    );
  // A sentence's tokens as the haystack holds it, after other text and a space: counted after an
  // anchor, since a tokenizer that prepends "▁" to its whole input (Llama 2, Mistral) would give
  // " s" on its own one token more than it takes inside the text.
  const anchor = tokenizer.encode(".", { addSpecialTokens: false }).length;
  const count = (s: string) => tokenizer.encode(`. ${s}`, { addSpecialTokens: false }).length - anchor;
  const filler: Array<{ text: string; tokens: number }> = [];
  let used = 0;
  let doc = randomInt(random, 0, corpus.filler.length - 1);
  let sentence = randomInt(random, 0, corpus.filler[doc].length - 1);
  while (used < budget) {
    const s = corpus.filler[doc][sentence];
    const tokens = count(s);
    if (used + tokens <= budget) {
      filler.push({ text: s, tokens });
      used += tokens;
    } else {
      // The sentence's first words, as many as fit.
      const words = s.split(" ");
      let kept = 0,
        keptTokens = 0;
      while (kept < words.length) {
        const t = count(words.slice(0, kept + 1).join(" "));
        if (used + t > budget) break;
        kept++;
        keptTokens = t;
      }
      if (kept) filler.push({ text: words.slice(0, kept).join(" "), tokens: keptTokens });
      used += keptTokens;
      break;
    }
    if (++sentence === corpus.filler[doc].length) {
      sentence = 0;
      doc = (doc + 1) % corpus.filler.length;
    }
  }
  // Boundary b sits after filler[0 .. b); its token offset in the filler is starts[b].
  const starts = [0];
  for (const f of filler) starts.push(starts[starts.length - 1] + f.tokens);
  const boundaryAt = (depth: number) => {
    let best = 0;
    for (let b = 0; b < starts.length; b++) if (Math.abs(starts[b] - depth * used) < Math.abs(starts[best] - depth * used)) best = b;
    return best;
  };
  // Needles that meet at one boundary go in a seeded random order: in index order the answering
  // one would always come first among them, a cue a model can learn instead of matching the key.
  const placed = text.needles
    .map((needle, i) => ({ needle, at: boundaryAt(needle.depth), order: text.chained ? i : random() }))
    .sort((a, b) => a.at - b.at || a.order - b.order);
  const pieces: Piece[] = [];
  let next = 0;
  for (let b = 0; b <= filler.length; b++) {
    while (next < placed.length && placed[next].at === b)
      pieces.push({ text: placed[next].needle.text, fillerBefore: starts[b], needle: placed[next++].needle });
    if (b < filler.length) pieces.push({ text: filler[b].text, fillerBefore: starts[b] });
  }
  return { pieces, fillerTokens: used };
}

function assemble(
  tokenizer: Tokenizer,
  spec: SampleSpec,
  text: TaskText,
  pieces: Piece[],
  fillerTokens: number,
  options: SampleOptions,
): TaskSample {
  const haystack = pieces.map((p) => ` ${p.text}`).join("");
  const { text: full, at } = wrap(tokenizer, text, haystack, options);
  const prompt = encodePrompt(tokenizer, full, options);
  const tokensBefore = (chars: number) => encodePrompt(tokenizer, full.slice(0, chars), options).length;
  const needles: TaskSample["needles"] = [];
  const values: string[] = [];
  let offset = at;
  for (const p of pieces) {
    if (p.needle?.value !== undefined) values.push(p.needle.value);
    if (p.needle)
      needles.push({
        text: p.needle.text,
        token: tokensBefore(offset),
        answering: p.needle.answering,
        depthReached: fillerTokens ? p.fillerBefore / fillerTokens : 0,
      });
    offset += p.text.length + 1;
  }
  const answer = text.answer ?? values.join(", ");
  return {
    ...spec,
    text: full,
    prompt,
    answer,
    references: text.references ?? values,
    answerIds: tokenizer.encode(` ${answer}`, { addSpecialTokens: false }),
    haystack: { start: tokensBefore(at), end: tokensBefore(at + haystack.length) },
    needles,
    fillerTokens,
  };
}

/**
 * Whether a greedy continuation answers: after leading whitespace it starts with the answer,
 * which is not followed by more of the same word or number ("68142" is not "681425").
 * @example isCorrect(" 68142. The pass key", "68142") // true
 */
export function isCorrect(continuation: string, answer: string): boolean {
  const text = continuation.trimStart();
  return text.startsWith(answer) && !/^[\p{L}\p{N}]/u.test(text.slice(answer.length));
}

/**
 * RULER's string match (its `string_match_all`): the share of the references found anywhere in the
 * continuation, ignoring case. It gives partial credit, in any order and wording, where isCorrect
 * asks for the whole answer first; it is the score RULER and the LightTransfer paper report.
 * @example rulerScore(" 123, 789 and 456", ["123", "456", "999"]) // 2 / 3
 */
export function rulerScore(continuation: string, references: readonly string[]): number {
  if (references.length === 0) throw new RangeError("rulerScore: give at least one reference");
  const text = continuation.toLowerCase();
  return references.filter((r) => text.includes(r.toLowerCase())).length / references.length;
}
