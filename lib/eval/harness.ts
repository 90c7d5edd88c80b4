// The evaluation: every task sample (task × context × depth × seed) answered greedily in every
// mode, and perplexity on held-out text, into one report. Samples are made once and shared by the
// modes, so the modes differ only in attention.
import { expectModel, type Model } from "../api/model";
import type { ModelConfig } from "../checkpoint/config";
import type { Tokenizer } from "../checkpoint/tokenizer";
import { optionalFunction, optionalSignal, show } from "../common/validate";
import type { GenerateResult } from "../generate/options";
import { type HybridOptions, resolveHybrid } from "../hybrid/options";
import type { HybridState } from "../hybrid/policy";
import { brownCorpus, type Corpus } from "./corpus";
import { type EvalMode, evalModes, type ModeOptions } from "./modes";
import { isCorrect, makeSample, rulerScore, type TaskName, type TaskSample, taskNames } from "./tasks";

/** What an evaluation runs: tasks, prompt lengths, needle depths, seeds, perplexity, chat, and (ModeOptions) the attention modes to compare. */
export interface EvalConfig extends ModeOptions {
  tasks: TaskName[];
  /** Prompt lengths in tokens. */
  contexts: number[];
  /** Needle depths in [0, 1]. */
  depths: number[];
  /** One sample per task, context, depth and seed. */
  seeds: number[];
  /** Perplexity on held-out text at each context (one window per seed), in every mode. */
  perplexity: boolean;
  /** Wrap prompts in the model's chat template. */
  chat: boolean;
  /**
   * Tokens a model may write past the answer's length before it is scored (8: room for a period or
   * a newline; RULER gives the needle tasks 128 and variable tracking 30, so a model that writes a
   * preamble first needs more for rulerScore to find its answer).
   */
  extraTokens: number;
}

/** One sample answered in one mode. */
export interface SampleResult {
  mode: string;
  task: TaskName;
  context: number;
  depth: number;
  seed: number;
  promptTokens: number;
  /** The answer's tokens (absent in reports written before it was kept). */
  answerTokens?: number;
  /** Where the answering needle went: the share of filler tokens before it. */
  depthReached: number;
  answer: string;
  /** The answer's parts RULER's string match looks for (TaskSample.references). */
  references: string[];
  output: string;
  /** Exact match (isCorrect). */
  correct: boolean;
  /** RULER's string match over the answer's parts (rulerScore), in [0, 1]. */
  rulerScore: number;
  lazyLayers: number[];
}

export interface PerplexityResult {
  mode: string;
  context: number;
  seed: number;
  /** Tokens scored: the second half of the window, given the first. */
  tokens: number;
  perplexity: number;
  lazyLayers: number[];
}

/** Share of one mode's samples answered correctly at one task and context. */
export interface AccuracyCell {
  mode: string;
  task: TaskName;
  context: number;
  accuracy: number;
  /** The mean of the samples' RULER string match (rulerScore). */
  rulerScore: number;
  samples: number;
  /** The 95% Wilson score interval of the accuracy over this many samples: [low, high]. */
  interval95: [number, number];
}

/** An evaluation's results, per mode, task and length, as eval.json holds them. */
export interface EvalReport {
  model: string;
  layers: number;
  /** The model's max_position_embeddings (absent in reports written before it was kept). */
  maxPositions?: number;
  config: EvalConfig;
  modes: EvalMode[];
  samples: SampleResult[];
  perplexity: PerplexityResult[];
  accuracy: AccuracyCell[];
}

/** How far an evaluation has come, given to onProgress after each cell. */
export interface EvalProgress {
  done: number;
  total: number;
  /** What was just finished, e.g. "auto 50% passkey 4096". */
  step: string;
}

/** runEval's options besides the configuration: progress, cancellation and the text it draws from. */
export interface RunEvalOptions {
  onProgress?: (progress: EvalProgress) => void;
  signal?: AbortSignal;
  /** The text to draw filler and held-out windows from (default: the Brown corpus). */
  corpus?: Corpus;
}

/**
 * Runs the evaluation: samples made with the model's tokenizer, each answered greedily in every
 * mode and scored by exact match (isCorrect) and by RULER's string match (rulerScore), and
 * perplexity on held-out text.
 * @example
 * const config = resolveEvalConfig([defaultEvalSettings, { contexts: [4096] }], model.tokenizer.hasChatTemplate);
 * const report = await runEval(model, config, { onProgress: (p) => bar.update(p.done) });
 * fs.writeFileSync("eval.json", JSON.stringify(report));
 */
export async function runEval(model: Model, config: EvalConfig, options: RunEvalOptions = {}): Promise<EvalReport> {
  expectModel(model, "runEval");
  if (!model.hasTokenizer)
    throw new Error(
      "runEval: its samples are written as text with the model's tokenizer, and this model was loaded without one; load it with one",
    );
  const modes = checkEvalSetup(config, model.config);
  optionalFunction(options.onProgress, "runEval: onProgress");
  const signal = optionalSignal(options.signal, "runEval: signal");
  const tokenizer = model.tokenizer;
  checkChat(config, tokenizer);
  const corpus = options.corpus ?? brownCorpus();
  const specs = config.tasks.flatMap((task) =>
    config.contexts.flatMap((context) => config.depths.flatMap((depth) => config.seeds.map((seed) => ({ task, context, depth, seed })))),
  );
  const windows = config.perplexity ? config.contexts.flatMap((context) => config.seeds.map((seed) => ({ context, seed }))) : [];
  const total = modes.length * (specs.length + windows.length);
  let done = 0;
  const tick = (step: string) => options.onProgress?.({ done: ++done, total, step });

  const sampleOptions = { chat: config.chat, maxPositions: model.config.maxPositionEmbeddings, extraTokens: config.extraTokens };
  // Building a long sample takes a while (tokenizing its haystack): the signal is looked at, and the
  // event loop given a turn (where a Ctrl-C lands), between samples.
  const buildEach = async <T, R>(items: readonly T[], build: (item: T) => R): Promise<R[]> => {
    const built: R[] = [];
    for (const item of items) {
      signal?.throwIfAborted();
      built.push(build(item));
      await yieldToEventLoop();
    }
    return built;
  };
  const samples: TaskSample[] = await buildEach(specs, (spec) => makeSample(tokenizer, corpus, spec, sampleOptions));
  const heldOut = await buildEach(windows, (w) => heldOutWindow(tokenizer, corpus, w.context, w.seed));
  const results: SampleResult[] = [];
  const perplexity: PerplexityResult[] = [];
  for (const mode of modes) {
    for (const sample of samples) {
      signal?.throwIfAborted();
      const out = await answerSample(model, sample, { hybrid: mode.hybrid, extraTokens: config.extraTokens, signal });
      const answering = sample.needles.find((n) => n.answering);
      results.push({
        mode: mode.name,
        task: sample.task,
        context: sample.context,
        depth: sample.depth,
        seed: sample.seed,
        promptTokens: sample.prompt.length,
        answerTokens: sample.answerIds.length,
        depthReached: answering?.depthReached ?? sample.depth,
        answer: sample.answer,
        references: sample.references,
        output: out.text,
        ...scoreAnswer(sample, out.text),
        lazyLayers: lazyOf(out.hybrid),
      });
      tick(`${mode.name} ${sample.task} ${sample.context}`);
    }
    for (const [i, ids] of heldOut.entries()) {
      signal?.throwIfAborted();
      const half = Math.floor(ids.length / 2);
      const scored = await model.score(ids.slice(0, half), ids.slice(half), { hybrid: mode.hybrid, maxContext: ids.length, signal });
      perplexity.push({
        mode: mode.name,
        context: windows[i].context,
        seed: windows[i].seed,
        tokens: scored.tokens.length,
        perplexity: scored.perplexity,
        lazyLayers: lazyOf(scored.hybrid),
      });
      tick(`${mode.name} perplexity ${windows[i].context}`);
    }
  }
  return {
    model: model.dir,
    layers: model.config.layers,
    maxPositions: model.config.maxPositionEmbeddings,
    config,
    modes,
    samples: results,
    perplexity,
    accuracy: accuracyCells(results),
  };
}

const lazyOf = (state: HybridState | undefined) => [...(state?.lazyLayers ?? [])];

/**
 * A sample answered greedily as the evaluation answers it: up to the answer's length and
 * `extraTokens` more, in a session just large enough for that.
 * @example const out = await answerSample(model, sample, { hybrid: { mode: "off" }, extraTokens: 8 });
 */
export async function answerSample(
  model: Model,
  sample: Pick<TaskSample, "prompt" | "answerIds">,
  options: { hybrid: HybridOptions; extraTokens: number; signal?: AbortSignal },
): Promise<GenerateResult> {
  const maxNewTokens = sample.answerIds.length + options.extraTokens;
  const [out] = await model.generateBatch([sample.prompt], {
    maxNewTokens,
    maxContext: sample.prompt.length + maxNewTokens,
    hybrid: options.hybrid,
    signal: options.signal,
  });
  return out;
}

/**
 * A sample's answer scored both ways: exact match against the whole answer (isCorrect) and RULER's
 * string match over its parts (rulerScore).
 * @example const { correct, rulerScore } = scoreAnswer(sample, out.text);
 */
export function scoreAnswer(
  sample: Pick<TaskSample, "answer" | "references">,
  output: string,
): Pick<SampleResult, "correct" | "rulerScore"> {
  return { correct: isCorrect(output, sample.answer), rulerScore: rulerScore(output, sample.references) };
}

/**
 * `context` tokens of held-out text for a seed: the tokenizer's special tokens (a BOS, as a prompt
 * starts), then the seed-th stretch of the held-out documents' tokens, so that the windows of one
 * context do not overlap until the held-out text runs out (they wrap around it then). runEval
 * scores the second half given the first.
 * @example const ids = heldOutWindow(model.tokenizer, brownCorpus(), 4096, 0);
 */
export function heldOutWindow(tokenizer: Tokenizer, corpus: Corpus, context: number, seed: number): number[] {
  const start = tokenizer.encode("");
  const body = context - start.length;
  const stream = heldOutTokens(tokenizer, corpus);
  if (body < 1 || stream.length < body)
    throw new RangeError(`the held-out text has ${stream.length} tokens, fewer than a window of ${context}: ask for a shorter context`);
  const from = ((seed % stream.length) * body) % stream.length;
  const ids = [...start];
  for (let i = 0; i < body; i++) ids.push(stream[(from + i) % stream.length]);
  return ids;
}

const heldOutCache = new WeakMap<Tokenizer, WeakMap<Corpus, number[]>>();

/** The held-out documents as one stream of tokens (no special tokens), tokenized once per tokenizer and corpus. */
function heldOutTokens(tokenizer: Tokenizer, corpus: Corpus): number[] {
  const byCorpus = heldOutCache.get(tokenizer) ?? new WeakMap<Corpus, number[]>();
  heldOutCache.set(tokenizer, byCorpus);
  let tokens = byCorpus.get(corpus);
  if (!tokens) {
    tokens = tokenizer.encode(corpus.heldOut.join("\n\n"), { addSpecialTokens: false });
    byCorpus.set(corpus, tokens);
  }
  return tokens;
}

/**
 * Accuracy (exact match) and mean RULER string match per mode, task and context, in the order the
 * samples came.
 * @example const cells = accuracyCells(report.samples);
 */
export function accuracyCells(results: readonly SampleResult[]): AccuracyCell[] {
  const cells = new Map<string, Omit<AccuracyCell, "interval95"> & { correct: number; rulerSum: number }>();
  for (const r of results) {
    const key = `${r.mode}|${r.task}|${r.context}`;
    let cell = cells.get(key);
    if (!cell) {
      cell = { mode: r.mode, task: r.task, context: r.context, accuracy: 0, rulerScore: 0, samples: 0, correct: 0, rulerSum: 0 };
      cells.set(key, cell);
    }
    cell.samples++;
    if (r.correct) cell.correct++;
    cell.rulerSum += r.rulerScore;
  }
  return [...cells.values()].map(({ correct, rulerSum, ...cell }) => ({
    ...cell,
    accuracy: correct / cell.samples,
    rulerScore: rulerSum / cell.samples,
    interval95: wilsonInterval(correct, cell.samples),
  }));
}

/**
 * The 95% Wilson score interval of a share of `correct` out of `samples`: unlike p ± 1.96·SE it
 * stays inside [0, 1] and is not empty at 0% or 100%, which small evaluation cells often are.
 * @example wilsonInterval(14, 20) // [0.481, 0.855] (rounded)
 */
export function wilsonInterval(correct: number, samples: number): [number, number] {
  if (!Number.isInteger(samples) || samples < 0 || !Number.isInteger(correct) || correct < 0 || correct > samples)
    throw new RangeError(`wilsonInterval: needs whole counts with 0 <= correct <= samples, got ${show(correct)} of ${show(samples)}`);
  if (samples === 0) return [0, 1];
  const z = 1.959963984540054;
  const p = correct / samples;
  const z2n = (z * z) / samples;
  const center = (p + z2n / 2) / (1 + z2n);
  const half = (z * Math.sqrt((p * (1 - p)) / samples + z2n / (4 * samples))) / (1 + z2n);
  // At 0 or all right the formula's end is 0 or 1 only up to rounding; the interval must hold the accuracy.
  return [correct === 0 ? 0 : Math.max(0, center - half), correct === samples ? 1 : Math.min(1, center + half)];
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Checks an evaluation config against a model's config.json alone and returns the modes it runs,
 * so that a bad setting is refused before the weights load (runEval checks the same).
 * @example
 * const modes = checkEvalSetup(resolveEvalConfig([settings], false), readConfig("./Llama-3.1-8B-Instruct"));
 */
export function checkEvalSetup(
  config: EvalConfig,
  modelConfig: Pick<ModelConfig, "layers" | "slidingWindow" | "maxPositionEmbeddings">,
): EvalMode[] {
  checkEvalConfig(config, modelConfig.maxPositionEmbeddings);
  return checkedModes(modelConfig, config);
}

/**
 * Checks what the tokenizer decides before the weights load: chat prompts need a chat template,
 * and each task's first sample at the shortest context must fit (its instructions, question and
 * needles take tokens of their own). runEval builds every sample.
 * @example
 * const tokenizer = Tokenizer.fromDirectory(dir);
 * checkEvalPrompts(config, tokenizer, readConfig(dir).maxPositionEmbeddings);
 */
export function checkEvalPrompts(config: EvalConfig, tokenizer: Tokenizer, maxPositions: number, corpus: Corpus = brownCorpus()): void {
  checkChat(config, tokenizer);
  const context = Math.min(...config.contexts);
  const options = { chat: config.chat, maxPositions, extraTokens: config.extraTokens };
  for (const task of config.tasks)
    makeSample(tokenizer, corpus, { task, context, depth: config.depths[0], seed: config.seeds[0] }, options);
}

function checkChat(config: EvalConfig, tokenizer: Tokenizer): void {
  const problem = config.chat && tokenizer.chatTemplateProblem;
  if (problem) throw new Error(`eval: chat is on, but ${problem}: set chat to false (--chat off on the command line)`);
}

/**
 * The modes, each one's hybrid option checked against the model before any sample runs (a bad
 * sink or window, or a layer file of another model, would otherwise stop the run in that mode),
 * and contexts long enough for the modes to differ.
 */
function checkedModes({ layers, slidingWindow }: Pick<ModelConfig, "layers" | "slidingWindow">, config: EvalConfig): EvalMode[] {
  const file = config.layerFile;
  if (file && file.layers !== layers)
    throw new RangeError(
      `eval: the layer file was calibrated on a model of ${file.layers} layers (${file.model}); this one has ${layers}. Run lighttransfer calibrate on this model`,
    );
  const usesShape = config.autoFractions.length > 0 || config.randomSeeds.length > 0 || config.streamingAll;
  try {
    if (usesShape) resolveHybrid({ mode: "streaming-all", sink: config.sink, window: config.window }, layers);
  } catch (err) {
    throw new RangeError(`eval: sink and window (of the auto, random and streaming-all modes): ${(err as Error).message}`);
  }
  const modes = evalModes(layers, config);
  // Cells and table rows are keyed by name: two modes of one name would merge their samples.
  const named = modes.find((m, i) => modes.findIndex((other) => other.name === m.name) !== i);
  if (named)
    throw new RangeError(
      `eval: two modes are both named "${named.name}" (fractions that round to the same percentage); give fractions further apart`,
    );
  // Refused here, before the full mode's samples run, rather than by the first hybrid sequence.
  if (slidingWindow !== null && modes.some((m) => m.kind !== "off"))
    throw new RangeError(
      `eval: this model uses a sliding window (sliding_window ${slidingWindow}), so it has no full-attention layers to make lazy; ` +
        'evaluate full attention only: "autoFractions": [] and "randomSeeds": [] in the settings file, no layer file, and --no-streaming-all',
    );
  const shapes: Array<{ mode: EvalMode; cached: number }> = [];
  let autoCached = 0;
  for (const mode of modes) {
    if (mode.kind === "off") continue;
    try {
      const { sink, window } = resolveHybrid(mode.hybrid, layers);
      shapes.push({ mode, cached: sink + window });
      if (mode.kind === "auto") autoCached = Math.max(autoCached, sink + window);
    } catch (err) {
      throw new RangeError(`eval: mode "${mode.name}": ${(err as Error).message}`);
    }
  }
  if (!shapes.length) return modes;
  // Where the prompt fits in sink + window, a lazy layer keeps every token and the mode is full
  // attention; perplexity scores the window's second half given the first, where auto chooses.
  const shortest = Math.min(...config.contexts);
  const covered = shapes.filter((s) => shortest <= s.cached);
  if (covered.length) {
    // The layer file's own sink and window are the fixed mode's; the window setting does not change them.
    const remedies = [
      ...(covered.some((s) => s.mode.kind !== "fixed") ? [`a smaller window (e.g. ${Math.max(1, Math.floor(shortest / 16))})`] : []),
      ...(covered.some((s) => s.mode.kind === "fixed") ? ["a layer file calibrated with a smaller window"] : []),
      "longer contexts",
    ];
    const names = covered.map((s) => `"${s.mode.name}" (${s.cached} tokens)`).join(", ");
    throw new RangeError(
      `eval: context ${shortest} fits in the sink + window of mode${covered.length > 1 ? "s" : ""} ${names}, so ${covered.length > 1 ? "they" : "that mode"} would be full attention: give ${remedies.join(", or ")}`,
    );
  }
  // Auto chooses its lazy layers once the prompt outgrows sink + window; the other modes evict from the start.
  if (config.perplexity && Math.floor(shortest / 2) <= autoCached)
    throw new RangeError(
      `eval: perplexity at context ${shortest} scores its second half given the first ${Math.floor(shortest / 2)} tokens, which fit in the lazy layers' sink + window (${autoCached} tokens), so auto mode would choose no lazy layer: give a smaller window, longer contexts, or leave perplexity out`,
    );
  return modes;
}

/** Every field of an evaluation config checked; errors name the field. */
function checkEvalConfig(c: EvalConfig, maxPositions: number): void {
  const list = <T>(v: T[], name: string, ok: (x: T) => boolean, want: string, mayBeEmpty = false) => {
    const must = `eval: ${name} must be a ${mayBeEmpty ? "" : "non-empty "}list of ${want}`;
    if (!Array.isArray(v) || (v.length === 0 && !mayBeEmpty)) throw new RangeError(`${must}, got ${show(v)}`);
    const bad = v.findIndex((x) => !ok(x));
    if (bad >= 0) throw new RangeError(`${must}; ${show(v[bad])} is not one`);
    // A value given twice would count its samples twice in a cell (or merge two modes of one name).
    const twice = v.find((x, i) => v.indexOf(x) !== i);
    if (twice !== undefined) throw new RangeError(`eval: ${name} has ${show(twice)} twice; give each value once`);
  };
  list(c.tasks, "tasks", (t) => taskNames.includes(t), taskNames.join(", "));
  list(
    c.contexts,
    "contexts",
    (n) => Number.isInteger(n) && n >= 1 && n <= maxPositions,
    `token counts in [1, ${maxPositions}] (the model's max_position_embeddings)`,
  );
  list(c.depths, "depths", (d) => typeof d === "number" && d >= 0 && d <= 1, "depths in [0, 1]");
  list(c.seeds, "seeds", (s) => Number.isSafeInteger(s), "integers");
  list(c.autoFractions, "autoFractions", (f) => typeof f === "number" && f >= 0 && f < 1, "fractions in [0, 1)", true);
  list(c.randomSeeds, "randomSeeds", (s) => Number.isInteger(s) && s >= 0, "integers >= 0", true);
  if (!Number.isInteger(c.extraTokens) || c.extraTokens < 0 || c.extraTokens > 4096)
    throw new RangeError(`eval: extraTokens must be an integer in [0, 4096], got ${show(c.extraTokens)}`);
  for (const flag of ["streamingAll", "perplexity", "chat"] as const)
    if (typeof c[flag] !== "boolean") throw new TypeError(`eval: ${flag} must be true or false, got ${show(c[flag])}`);
  if (!(c.randomFraction >= 0 && c.randomFraction < 1))
    throw new RangeError(`eval: randomFraction must be in [0, 1), got ${show(c.randomFraction)}`);
}
