// Child side of the session fuzz, on the llama-tiny fixture whose greedy tokens transformers
// computed (reference.json): session and generate options of every kind, and dispose, abort,
// return or a full KV pool at every point of a generation. Afterwards the page pool and the
// live tensor bytes must be back at their baseline, and a fresh session must still generate
// the reference tokens.
import { loadModel, type Model, PoolExhaustedError, type Session } from "../../../lib";
import { readReference } from "../../helpers/fixtures";
import { attempt, expectMemoryBack, expectUsefulError, fail, liveCpuBytes, PropertyFailure } from "../harness/checks";
import { fixtureDir } from "./model-files";

const reference = readReference("llama-tiny");

export interface OptionsCase {
  kind: "options";
  api: "session" | "model" | "batch";
  prompt: number;
  session: Record<string, unknown> | null;
  generate: Record<string, unknown> | null;
  signal: "none" | "aborted" | "fake" | "object";
  /** Also pass a second, different-length prompt (batch). */
  second: boolean;
}

export interface SweepCase {
  kind: "sweep";
  api: "session" | "model" | "batch";
  prompt: number;
  /** What happens, and at which chunk (session, model) or event-loop turn (batch). */
  action: "abort" | "dispose" | "return" | "throw" | "abortDuringDecode" | "disposeDuringDecode";
  at: number;
  maxNewTokens: number;
  hybrid: boolean;
}

export interface PoolCase {
  kind: "pool";
  /** Sentences of the prompt, which runs out of the small pool's pages at a layer that depends on its length. */
  promptRepeat: number;
  chunk: number;
  hybrid: boolean;
}

export type SessionCase = OptionsCase | SweepCase | PoolCase;

let model: Model | undefined;
/** The same checkpoint with a KV pool of 12 pages (16 tokens each), which long prompts exhaust mid-prefill. */
let small: Model | undefined;
const freshTokens = 8;
const smallPages = 12;

async function theModel(): Promise<Model> {
  if (!model) {
    model = await loadModel(fixtureDir, { device: "cpu", kvCacheBytes: 4 * 2 ** 20 });
    small = await loadModel(fixtureDir, { device: "cpu", kvCacheBytes: smallPages * 2 * 16 * 1 * 64 * 4 });
  }
  return model;
}

async function collect(
  iterable: AsyncIterable<{ tokens: number[]; finishReason?: string }>,
): Promise<{ tokens: number[]; finishReason?: string }> {
  const tokens: number[] = [];
  let finishReason: string | undefined;
  for await (const chunk of iterable) {
    tokens.push(...chunk.tokens);
    finishReason = chunk.finishReason ?? finishReason;
  }
  return { tokens, finishReason };
}

function promptOf(i: number): string | Array<{ role: string; content: string }> {
  const c = reference.cases[i % reference.cases.length];
  return i % reference.cases.length === reference.cases.length - 1 ? reference.chatTemplateInput : c.prompt;
}

/** The library must be whole after the case: no pages held, no tensors left, reference tokens from a fresh session. */
async function expectRecovered(m: Model, what: string, memoryBaseline: number, pagesBefore: number): Promise<void> {
  if (m.pool.usedPages !== pagesBefore)
    fail(`${what}: afterwards ${m.pool.usedPages - pagesBefore} more KV pages are in use than before the case (no session of it is alive)`);
  await expectMemoryBack(memoryBaseline, what);
  const fresh = await collect(m.generate(promptOf(0), { maxNewTokens: freshTokens, stopAtEos: false }));
  const want = reference.cases[0].greedy.slice(0, freshTokens);
  if (fresh.tokens.join() !== want.join())
    fail(`${what}: afterwards a fresh session generates [${fresh.tokens}] instead of the reference [${want}]`);
  if (m.pool.usedPages !== pagesBefore) fail(`${what}: a fresh generation left ${m.pool.usedPages - pagesBefore} pages in use`);
}

const isInt = (v: unknown) => typeof v === "number" && Number.isInteger(v);
const absent = (v: unknown) => v === undefined || v === null;

/** The session options' hybrid object, when it is one. */
function hybridOf(s: Record<string, unknown>): { mode?: unknown; seed?: unknown; prefill?: unknown } | undefined {
  const h = s.hybrid;
  return typeof h === "object" && h !== null && !Array.isArray(h)
    ? (h as { mode?: unknown; seed?: unknown; prefill?: unknown })
    : undefined;
}

/** Why the options are invalid, if they are (values the documentation rules out), else undefined. */
function invalidOption(c: OptionsCase): string | undefined {
  if (c.session === null || c.generate === null) return "options object is null";
  const s = c.session,
    g = c.generate;
  const checks: Array<[boolean, string]> = [
    [!absent(s.maxContext) && !(isInt(s.maxContext) && (s.maxContext as number) >= 1), "maxContext"],
    [!absent(s.prefillChunk) && !(isInt(s.prefillChunk) && (s.prefillChunk as number) >= 1), "prefillChunk"],
    [!absent(g.maxNewTokens) && !(isInt(g.maxNewTokens) && (g.maxNewTokens as number) >= 0), "maxNewTokens"],
    [!absent(g.temperature) && !(typeof g.temperature === "number" && Number.isFinite(g.temperature) && g.temperature >= 0), "temperature"],
    [!absent(g.topK) && !(isInt(g.topK) && (g.topK as number) >= 0), "topK"],
    [!absent(g.topP) && !(typeof g.topP === "number" && g.topP > 0 && g.topP <= 1), "topP"],
    [
      !absent(g.repetitionPenalty) &&
        !(typeof g.repetitionPenalty === "number" && Number.isFinite(g.repetitionPenalty) && g.repetitionPenalty > 0),
      "repetitionPenalty",
    ],
    [!absent(g.seed) && !isInt(g.seed), "seed"],
    [!absent(g.stop) && !(Array.isArray(g.stop) && g.stop.every((x) => typeof x === "string" && x.length > 0)), "stop"],
    [c.signal === "fake" || c.signal === "object", "signal"],
    // Hybrid options that do nothing in their mode (the rest of hybrid's checks are not modelled here).
    [hybridOf(s) !== undefined && hybridOf(s)!.seed !== undefined && hybridOf(s)!.mode !== "random", "hybrid.seed outside mode random"],
    [
      hybridOf(s)?.prefill === "streaming" && [undefined, "auto", "calibrate", "off"].includes(hybridOf(s)!.mode as string | undefined),
      "hybrid.prefill streaming in a mode that measures or has no lazy layers",
    ],
  ];
  return checks.find(([bad]) => bad)?.[1];
}

async function runOptions(m: Model, c: OptionsCase): Promise<void> {
  const before = m.pool.usedPages;
  const prompt = promptOf(c.prompt);
  const signal =
    c.signal === "aborted" ? AbortSignal.abort() : c.signal === "fake" ? { aborted: false } : c.signal === "object" ? "signal" : undefined;
  const generate = c.generate === null ? null : { ...c.generate, ...(c.signal === "none" ? {} : { signal }) };
  const what = `${c.api} with session options ${describe(c.session)} and generate options ${describe(c.generate)}${c.signal === "none" ? "" : `, signal ${c.signal}`}`;
  const invalid = invalidOption(c) ?? (c.signal === "aborted" ? "an aborted signal" : undefined);
  const run = attempt(async () => {
    if (c.api === "batch") {
      const prompts = c.second ? [prompt, promptOf(c.prompt + 1)] : [prompt];
      const merged = c.session === null || generate === null ? null : { ...c.session, ...generate };
      const results = await m.generateBatch(prompts, merged as never);
      return results.map((r) => ({ tokens: r.tokens, finishReason: r.finishReason as string | undefined }));
    }
    if (c.api === "model")
      return [
        await collect(
          m.generate(prompt, c.generate === null || c.session === null ? (null as never) : ({ ...c.session, ...generate } as never)),
        ),
      ];
    const session: Session = m.createSession(c.session as never);
    try {
      return [await collect(session.generate(prompt, generate as never))];
    } finally {
      session.dispose();
    }
  });
  const outcome = await run;
  if (!outcome.ok) {
    expectUsefulError(outcome.error, what);
    return;
  }
  if (invalid) fail(`${what}: accepted, but ${invalid} is invalid and must be refused with an Error`);
  const g = c.generate ?? {};
  // null is an option left out, as the library reads it.
  const greedy = (absent(g.temperature) || g.temperature === 0) && (absent(g.repetitionPenalty) || g.repetitionPenalty === 1);
  const hybridOff =
    !c.session?.hybrid ||
    (c.session.hybrid as { mode?: unknown }).mode === undefined ||
    (c.session.hybrid as { mode?: unknown }).mode === "off";
  outcome.value.forEach((r, i) => {
    const vocab = m.config.vocabSize;
    if (r.tokens.some((t) => !Number.isInteger(t) || t < 0 || t >= vocab))
      fail(`${what}: generated a token outside the vocabulary: [${r.tokens}]`);
    const limit = absent(g.maxNewTokens) ? 256 : (g.maxNewTokens as number);
    if (r.tokens.length > Math.max(limit, 0)) fail(`${what}: generated ${r.tokens.length} tokens, more than maxNewTokens ${limit}`);
    if (!["eos", "stop", "length", "context"].includes(r.finishReason ?? "")) fail(`${what}: finish reason ${r.finishReason}`);
    const want = reference.cases[(c.prompt + i) % reference.cases.length].greedy;
    const n = Math.min(r.tokens.length, want.length);
    if (greedy && hybridOff && r.tokens.slice(0, n).join() !== want.slice(0, n).join())
      fail(`${what}: greedy tokens [${r.tokens.slice(0, n)}] differ from transformers' [${want.slice(0, n)}] (result ${i})`);
  });
  if (m.pool.usedPages !== before) fail(`${what}: ${m.pool.usedPages - before} pages still in use after the generation ended`);
}

function describe(v: unknown): string {
  return (
    JSON.stringify(v, (_k, x) =>
      typeof x === "bigint" ? `${x}n` : x === undefined ? "undefined" : typeof x === "number" && !Number.isFinite(x) ? String(x) : x,
    )?.slice(0, 240) ?? "undefined"
  );
}

const hybridFixed = { mode: "fixed", lazyLayers: [1], sink: 2, window: 4, lastQueries: 2 };

/** A session whose cache holds `context` tokens of `prompt` and its greedy continuation, made without interruption. */
async function uninterrupted(m: Model, promptIndex: number, context: number, hybrid: boolean): Promise<Session | undefined> {
  const session = m.createSession(hybrid ? { hybrid: hybridFixed as never } : {});
  const prompt = promptOf(promptIndex);
  const promptTokens =
    typeof prompt === "string"
      ? m.tokenizer.encode(prompt).length
      : m.tokenizer.encode(m.tokenizer.applyChatTemplate(prompt, { addGenerationPrompt: true }), { addSpecialTokens: false }).length;
  const newTokens = context - promptTokens + 1;
  if (newTokens < 1) {
    session.dispose();
    return undefined;
  }
  await collect(session.generate(promptOf(promptIndex), { maxNewTokens: newTokens, stopAtEos: false }));
  return session;
}

async function runSweep(m: Model, c: SweepCase, pagesBefore: number): Promise<void> {
  const what = `${c.api} generation of prompt ${c.prompt % reference.cases.length} (${c.maxNewTokens} tokens${c.hybrid ? ", hybrid" : ""}): ${c.action} at ${c.at}`;
  const controller = new AbortController();
  const options = {
    maxNewTokens: c.maxNewTokens,
    stopAtEos: false,
    signal: controller.signal,
    ...(c.hybrid ? { hybrid: hybridFixed as never } : {}),
  };
  if (c.api === "batch") {
    // Abort (or dispose the model's sessions: there are none) after `at` turns of the event loop.
    let turns = 0;
    const tick = () => (turns++ >= c.at ? controller.abort(new Error("aborted by the fuzz case")) : setImmediate(tick));
    setImmediate(tick);
    const outcome = await attempt(() => m.generateBatch([promptOf(c.prompt), promptOf(c.prompt + 1)], options));
    controller.abort();
    if (!outcome.ok) expectUsefulError(outcome.error, what);
    else
      outcome.value.forEach((r, i) => {
        const want = reference.cases[(c.prompt + i) % reference.cases.length].greedy.slice(0, r.tokens.length);
        if (!c.hybrid && r.tokens.join() !== want.join()) fail(`${what}: completed with [${r.tokens}] instead of the reference [${want}]`);
      });
    return;
  }
  const session = c.api === "session" ? m.createSession(c.hybrid ? { hybrid: hybridFixed as never } : {}) : undefined;
  const iterator = (session ? session.generate(promptOf(c.prompt), options) : m.generate(promptOf(c.prompt), options))[
    Symbol.asyncIterator
  ]();
  const tokens: number[] = [];
  let disposed = false;
  let chunk = 0;
  let pendingInterrupt: Promise<void> | undefined;
  const interrupt = (): void => {
    if (c.action.startsWith("abort")) controller.abort(new Error("aborted by the fuzz case"));
    else if (c.action.startsWith("dispose") && session) {
      // (model.generate owns its session: there is nothing of it to dispose from outside.)
      session.dispose();
      disposed = true;
    }
  };
  const outcome = await attempt(async () => {
    for (;;) {
      const at = chunk === c.at;
      let next: Promise<IteratorResult<{ tokens: number[] }>>;
      if (at && (c.action === "abortDuringDecode" || c.action === "disposeDuringDecode")) {
        next = iterator.next();
        // Lands while the generator waits between decode steps.
        pendingInterrupt = new Promise((resolve) => setImmediate(() => resolve(interrupt())));
      } else if (at && c.action === "return") next = iterator.return!(undefined) as never;
      else if (at && c.action === "throw") next = iterator.throw!(new Error("thrown into the generator by the fuzz case")) as never;
      else {
        if (at) interrupt();
        next = iterator.next();
      }
      const r = await next;
      if (r.done) return;
      tokens.push(...r.value.tokens);
      chunk++;
      if (disposed && m.pool.usedPages !== pagesBefore)
        fail(`${what}: after dispose() the generation went on and holds ${m.pool.usedPages - pagesBefore} pages`);
    }
  });
  await pendingInterrupt;
  if (!outcome.ok) {
    // A property that failed inside the loop leaves the generator suspended: close it, then report.
    if (outcome.error instanceof PropertyFailure) {
      await attempt(() => iterator.return?.(undefined));
      session?.dispose();
      throw outcome.error;
    }
    expectUsefulError(outcome.error, what);
  }
  const want = reference.cases[c.prompt % reference.cases.length].greedy.slice(0, tokens.length);
  if (!c.hybrid && tokens.join() !== want.join())
    fail(`${what}: tokens before the interruption [${tokens}] differ from the reference [${want}]`);
  if (session && !disposed) {
    // The interrupted session must go on as one that was never interrupted with the same context.
    const context = session.stats.contextTokens;
    const twin = await uninterrupted(m, c.prompt, context, c.hybrid);
    try {
      if (twin) {
        if (twin.stats.contextTokens !== context)
          fail(`${what}: interrupted session holds ${context} tokens, an uninterrupted one ${twin.stats.contextTokens}`);
        const again = await attempt(() => collect(session.generate("and then", { maxNewTokens: 4, stopAtEos: false })));
        if (!again.ok) fail(`${what}: the session cannot generate after the interruption: ${(again.error as Error).message}`);
        const expected = await collect(twin.generate("and then", { maxNewTokens: 4, stopAtEos: false }));
        if (again.value.tokens.join() !== expected.tokens.join())
          fail(`${what}: the interrupted session continues with [${again.value.tokens}], one never interrupted with [${expected.tokens}]`);
      }
    } finally {
      twin?.dispose();
      session.dispose();
    }
  }
  if (session && !disposed) session.dispose();
}

const optionNames = new Set(["maxContext", "prefillChunk", "hybrid", "kvCacheBytes", "pageSize", "device", "dtype", "computeDType"]);

async function runPool(c: PoolCase, pagesBefore: number): Promise<void> {
  const m = small!;
  const what = `prefill of ${c.promptRepeat} sentences in chunks of ${c.chunk} into a pool of ${m.pool.numPages} pages${c.hybrid ? " (hybrid)" : ""}`;
  const session = m.createSession({ prefillChunk: c.chunk, ...(c.hybrid ? { hybrid: hybridFixed as never } : {}) });
  try {
    const long = Array.from({ length: c.promptRepeat }, (_, i) => reference.cases[i % 3].prompt).join(" ");
    const outcome = await attempt(() => collect(session.generate(long, { maxNewTokens: 2, stopAtEos: false })));
    // Every problem is gathered, so one (a misleading message) does not hide another (a leak).
    const problems: string[] = [];
    if (!outcome.ok) {
      expectUsefulError(outcome.error, what);
      if (outcome.error instanceof PoolExhaustedError) {
        for (const [, name] of outcome.error.message.matchAll(/\{ (\w+) \}/g))
          if (!optionNames.has(name)) problems.push(`the error advises an option '${name}' that does not exist: ${outcome.error.message}`);
      }
    }
    const held = m.pool.usedPages - pagesBefore;
    if (!outcome.ok && session.stats.contextTokens === 0 && held !== 0)
      problems.push(`the failed prefill left ${held} pages reserved by a session that holds no tokens`);
    const check = outcome.ok ? { ok: true as const } : await attempt(() => sameAsFresh(m, session, c, what));
    if (!check.ok) problems.push(check.error instanceof PropertyFailure ? check.error.message : String(check.error));
    if (problems.length) fail(`${what}: ${problems.join("; ")}`);
  } finally {
    session.dispose();
  }
  if (m.pool.usedPages !== pagesBefore) fail(`${what}: ${m.pool.usedPages - pagesBefore} pages in use after every session was disposed`);
}

/** After a failed prefill the session must hold nothing and generate what a fresh session does. */
async function sameAsFresh(m: Model, session: Session, c: PoolCase, what: string): Promise<void> {
  const context = session.stats.contextTokens;
  if (context !== 0) fail(`${what}: after the failed prefill the session reports ${context} tokens of context instead of 0`);
  const again = await attempt(() => collect(session.generate(promptOf(0), { maxNewTokens: 4, stopAtEos: false })));
  if (!again.ok) {
    expectUsefulError(again.error, `${what}, then a short prompt`);
    return;
  }
  const fresh = m.createSession(c.hybrid ? { hybrid: hybridFixed as never } : {});
  try {
    const want = await collect(fresh.generate(promptOf(0), { maxNewTokens: 4, stopAtEos: false }));
    if (again.value.tokens.join() !== want.tokens.join())
      fail(`${what}: after the failed prefill the session generates [${again.value.tokens}], a fresh session [${want.tokens}]`);
  } finally {
    fresh.dispose();
  }
}

export async function runCase(c: SessionCase): Promise<void> {
  const m = await theModel();
  // Relative to the case's start: a case that leaked pages fails itself, not the ones after it.
  const pagesBefore = m.pool.usedPages,
    smallPagesBefore = small!.pool.usedPages;
  const memoryBefore = await liveCpuBytes();
  const what =
    c.kind === "options"
      ? "options case"
      : c.kind === "sweep"
        ? `sweep case ${c.api} ${c.action} at ${c.at}`
        : `pool case of ${c.promptRepeat} sentences`;
  if (c.kind === "options") await runOptions(m, c);
  else if (c.kind === "sweep") await runSweep(m, c, pagesBefore);
  else await runPool(c, smallPagesBefore);
  await expectRecovered(m, what, memoryBefore, pagesBefore);
}

export async function teardown(): Promise<void> {
  await model?.dispose();
  await small?.dispose();
}
