// Sessions and generation: prompt → prefill → decode steps → text chunks, with stop strings,
// EOS, a token budget and an AbortSignal. Policy only; every step is a decoder call.
import { HybridOptions, ResolvedHybrid, resolveHybrid } from "../hybrid/options";
import { fullCachePages } from "../hybrid/planner";
import { HybridPolicy, HybridState } from "../hybrid/policy";
import { defaultPrefillChunk } from "../model/decoder";
import type { Sequence } from "../model/sequence";
import { decodeNext, Sampler, SamplingOptions, validateSampling } from "../generate/sampling";
import { ChatMessage } from "../checkpoint/tokenizer";
import type { Model } from "./model";
import { integerIn, maxTokens, optionalBoolean, optionalSignal, optionsObject, show } from "../common/validate";

/** Plain text, or chat messages rendered with the model's chat template. */
export type Prompt = string | ChatMessage[];

export interface SessionOptions {
  /** Most tokens (prompt + generated) this session may hold; default: the model's max_position_embeddings. */
  maxContext?: number;
  /** Prompt tokens per prefill chunk (default 4096: fewer, larger calls keep the GPU busy). */
  prefillChunk?: number;
  /** LightTransfer: which layers become streaming (lazy). Default: all layers full. */
  hybrid?: HybridOptions;
}

export interface GenerateOptions extends SamplingOptions {
  /** Default 256. */
  maxNewTokens?: number;
  /** Generation ends before any of these strings; the string itself is not returned. */
  stop?: string[];
  /** Also end at the model's EOS token(s) (default true). */
  stopAtEos?: boolean;
  signal?: AbortSignal;
}

export type FinishReason = "eos" | "stop" | "length" | "context";

export interface GenerateChunk {
  /** New text since the last chunk. */
  text: string;
  /** Token ids generated in this step. */
  tokens: number[];
  /** Set on the last chunk. */
  finishReason?: FinishReason;
}

export interface GenerateResult {
  text: string;
  tokens: number[];
  finishReason: FinishReason;
  /** The sequence's lazy layers and ratios (hybrid generation). */
  hybrid?: HybridState;
}

export interface SessionStats {
  promptTokens: number;
  generatedTokens: number;
  /** Tokens held in the cache now. */
  contextTokens: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  /** KV bytes this session's caches hold now, and what full caches of every layer would hold. */
  kvBytes: number;
  kvBytesFull: number;
  /** Lazy layers, lazy ratios and whether the choice is still pending (hybrid sessions). */
  hybrid?: HybridState;
}

/** Largest prompt chunk: a chunk's activations are allocated at once. */
const maxPrefillChunk = 2 ** 20;

function validateGenerate<T extends GenerateOptions>(options: T | undefined, what: string) {
  const o = optionsObject<T>(options, `${what}: options`);
  const maxNewTokens = integerIn(o.maxNewTokens, `${what}: maxNewTokens`, 0, maxTokens, 256);
  if (o.stop !== undefined && (!Array.isArray(o.stop) || o.stop.some((s) => typeof s !== "string" || s.length === 0)))
    throw new TypeError(`${what}: stop must be an array of non-empty strings, got ${show(o.stop)}`);
  const stopAtEos = optionalBoolean(o.stopAtEos, `${what}: stopAtEos`) ?? true;
  const signal = optionalSignal(o.signal, `${what}: signal`);
  return { options: o, maxNewTokens, stop: o.stop ?? [], stopAtEos, signal };
}

function validateSession(options: SessionOptions | undefined, model: Model, what: string) {
  const o = optionsObject(options, `${what}: options`);
  return {
    maxContext: integerIn(o.maxContext, `${what}: maxContext`, 1, maxTokens, model.config.maxPositionEmbeddings),
    prefillChunk: integerIn(o.prefillChunk, `${what}: prefillChunk`, 1, maxPrefillChunk, defaultPrefillChunk),
    hybrid: resolveHybrid(o.hybrid, model.config.layers),
  };
}

/** The error a generation ends with when its session or model is disposed under it. */
function disposedDuringGeneration(what: "session" | "model"): Error {
  const err = new Error(
    `this ${what} was disposed during generation: the generation stopped and its KV pages were released`,
  );
  err.name = "AbortError";
  return err;
}

/**
 * Turns generated token ids into text chunks: decodes the whole tail so multi-token characters
 * come out whole, holds back a possible start of a stop string, and finds stop strings.
 */
class TextStream {
  private ids: number[] = [];
  private emitted = 0;
  constructor(private readonly model: Model, private readonly stops: string[]) {}

  push(id: number): { text: string; stopped: boolean } {
    this.ids.push(id);
    const full = this.model.tokenizer.decode(this.ids, { skipSpecialTokens: true });
    for (const s of this.stops) {
      const at = full.indexOf(s);
      if (at >= 0) {
        const text = full.slice(this.emitted, Math.max(at, this.emitted));
        this.emitted = full.length;
        return { text, stopped: true };
      }
    }
    // Hold back an incomplete character and any suffix that could begin a stop string.
    let safe = full.endsWith("\uFFFD") ? full.length - 1 : full.length;
    for (const s of this.stops)
      for (let k = Math.min(s.length - 1, safe); k > 0; k--)
        if (full.slice(safe - k, safe) === s.slice(0, k)) {
          safe -= k;
          break;
        }
    const text = full.slice(this.emitted, Math.max(safe, this.emitted));
    this.emitted = Math.max(safe, this.emitted);
    return { text, stopped: false };
  }

  flush(): string {
    const full = this.model.tokenizer.decode(this.ids, { skipSpecialTokens: true });
    const text = full.slice(this.emitted);
    this.emitted = full.length;
    return text;
  }
}

/** A sequence and, for hybrid sessions, the policy that runs its caches. */
function startSequence(model: Model, hybrid: ResolvedHybrid): { seq: Sequence; policy?: HybridPolicy } {
  if (hybrid.mode === "off") return { seq: model.decoder.createSequence() };
  const policy = new HybridPolicy(model.decoder, hybrid);
  return { seq: model.decoder.createSequence(policy), policy };
}

/**
 * Prefills `ids` into a sequence, all or nothing: if it fails part-way the decoder puts the
 * sequence back (a first prompt's failure leaves a policy that chose layers to start afresh,
 * which `onFirstFailure` does).
 */
function prefillAtomic(model: Model, seq: Sequence, ids: number[], chunkSize: number, onFirstFailure: () => void): Float32Array {
  const first = seq.length === 0;
  try {
    return model.decoder.prefill(seq, ids, { chunkSize });
  } catch (err) {
    if (first) onFirstFailure();
    throw err;
  }
}

/** Prompt → token ids: chat messages through the template; plain text with the tokenizer's special tokens. */
export function promptIds(model: Model, prompt: Prompt): number[] {
  if (typeof prompt === "string") return model.tokenizer.encode(prompt);
  if (!Array.isArray(prompt)) throw new TypeError(`a prompt must be a string or an array of chat messages, got ${show(prompt)}`);
  prompt.forEach((m, i) => {
    if (typeof m !== "object" || m === null || typeof m.role !== "string" || typeof m.content !== "string")
      throw new TypeError(`chat message ${i} must be { role: string, content: string }, got ${show(m)}`);
  });
  return model.tokenizer.encode(model.tokenizer.applyChatTemplate(prompt, { addGenerationPrompt: true }), { addSpecialTokens: false });
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * A conversation: one sequence whose KV cache persists across generate() calls. The session owns
 * its in-flight work: dispose() during generate() releases the caches at once, and the generation
 * stops at its next step with an AbortError ("this session was disposed during generation"),
 * decoding nothing more. A generate() that fails while its prompt is prefilled (the page pool
 * running out, say) leaves the session exactly as it was before that call, so it can go on.
 * @example
 * const chat = model.createSession({ maxContext: 8192 });
 * for await (const chunk of chat.generate("Hello!", { maxNewTokens: 64 })) process.stdout.write(chunk.text);
 * chat.dispose();
 */
export class Session implements AsyncDisposable {
  private seq: Sequence | undefined;
  private policy: HybridPolicy | undefined;
  private readonly maxContext: number;
  private readonly prefillChunk: number;
  private readonly hybrid: ResolvedHybrid;
  private busy = false;
  private stat = { promptTokens: 0, generatedTokens: 0, prefillSeconds: 0, decodeSeconds: 0 };

  /** @internal use model.createSession */
  constructor(private readonly model: Model, options: SessionOptions | undefined, private readonly onDispose: () => void) {
    ({ maxContext: this.maxContext, prefillChunk: this.prefillChunk, hybrid: this.hybrid } = validateSession(options, model, "createSession"));
    ({ seq: this.seq, policy: this.policy } = startSequence(model, this.hybrid));
  }

  get stats(): SessionStats {
    const seq = this.live();
    const { pool } = this.model;
    const full = this.model.config.layers * fullCachePages(seq.length, pool.pageSize) * pool.pageBytes;
    return {
      promptTokens: this.stat.promptTokens,
      generatedTokens: this.stat.generatedTokens,
      contextTokens: seq.length,
      prefillTokensPerSecond: this.stat.promptTokens / Math.max(this.stat.prefillSeconds, 1e-9),
      decodeTokensPerSecond: this.stat.generatedTokens / Math.max(this.stat.decodeSeconds, 1e-9),
      kvBytes: seq.caches.reduce((a, c) => a + c.bytes, 0),
      kvBytesFull: full,
      hybrid: this.policy?.state,
    };
  }

  /**
   * Appends the prompt to this session's context and streams the continuation. Disposing the
   * session (or its model) while this runs ends it with an AbortError at the next step.
   * @example
   * for await (const chunk of session.generate("Why is the sky blue?", { maxNewTokens: 128, stop: ["\n\n"] }))
   *   process.stdout.write(chunk.text);
   */
  async *generate(prompt: Prompt, options?: GenerateOptions): AsyncGenerator<GenerateChunk> {
    const { options: o, maxNewTokens, stop, stopAtEos, signal } = validateGenerate(options, "generate");
    const sampler = new Sampler(o);
    let seq = this.live();
    if (this.busy) throw new Error("this session is already generating; wait for it or use another session");
    const ids = promptIds(this.model, prompt);
    if (ids.length === 0) throw new RangeError("the prompt encodes to no tokens");
    if (seq.length + ids.length > this.maxContext)
      throw new RangeError(
        `the prompt has ${ids.length} tokens and the session already holds ${seq.length}: more than maxContext ${this.maxContext}. ` +
          "Shorten the prompt or create the session with a larger maxContext",
      );
    this.busy = true;
    try {
      signal?.throwIfAborted();
      let t0 = performance.now();
      const logits = prefillAtomic(this.model, seq, ids, this.prefillChunk, () => (seq = this.restart()));
      // The next token once a decode step has chosen it (the first comes from the prefill's logits).
      let chosen: number | undefined;
      this.stat.prefillSeconds += (performance.now() - t0) / 1000;
      this.stat.promptTokens += ids.length;
      const stream = new TextStream(this.model, stop);
      const seen = [...ids];
      const eos = new Set(stopAtEos ? this.model.config.eosTokenIds : []);
      if (maxNewTokens === 0) {
        yield { text: "", tokens: [], finishReason: "length" };
        return;
      }
      for (let step = 1; ; step++) {
        const next = chosen ?? sampler.next(logits, seen);
        seen.push(next);
        if (eos.has(next)) {
          yield { text: stream.flush(), tokens: [next], finishReason: "eos" };
          return;
        }
        const { text, stopped } = stream.push(next);
        if (stopped) {
          yield { text, tokens: [next], finishReason: "stop" };
          return;
        }
        const finishReason = step === maxNewTokens ? "length" : seq.length + 1 > this.maxContext ? "context" : undefined;
        if (finishReason) {
          yield { text: text + stream.flush(), tokens: [next], finishReason };
          return;
        }
        yield { text, tokens: [next] };
        await yieldToEventLoop();
        // Whoever held the generator may have disposed the session (or the model) meanwhile.
        if (this.seq !== seq) throw disposedDuringGeneration("session");
        signal?.throwIfAborted();
        t0 = performance.now();
        chosen = decodeNext(this.model.decoder, [seq], [next], [sampler], [seen])[0];
        this.stat.decodeSeconds += (performance.now() - t0) / 1000;
        this.stat.generatedTokens += 1;
      }
    } finally {
      this.busy = false;
    }
  }

  /** Frees this session's KV pages; a generation in progress stops at its next step. */
  dispose(): void {
    if (!this.seq) return;
    this.seq.dispose();
    this.seq = undefined;
    this.onDispose();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }

  /** A fresh sequence and policy in place of the current ones (after a failed first prompt). */
  private restart(): Sequence {
    this.live().dispose();
    ({ seq: this.seq, policy: this.policy } = startSequence(this.model, this.hybrid));
    return this.seq!;
  }

  private live(): Sequence {
    if (!this.seq) throw new Error("this session was disposed; create a new one with model.createSession()");
    return this.seq;
  }
}

/** Batched generation: every prompt prefilled, then one decode step per token for all active sequences. */
export async function generateBatch(model: Model, prompts: Prompt[], options?: GenerateOptions & SessionOptions): Promise<GenerateResult[]> {
  const { options: o, maxNewTokens, stop, stopAtEos, signal } = validateGenerate(options, "generateBatch");
  const { maxContext, prefillChunk, hybrid } = validateSession(o, model, "generateBatch");
  if (!Array.isArray(prompts)) throw new TypeError(`generateBatch: prompts must be an array of prompts, got ${show(prompts)}`);
  validateSampling(o);
  const encoded = prompts.map((p) => promptIds(model, p));
  encoded.forEach((ids, i) => {
    if (ids.length === 0) throw new RangeError(`prompt ${i} encodes to no tokens`);
    if (ids.length > maxContext) throw new RangeError(`prompt ${i} has ${ids.length} tokens, more than maxContext ${maxContext}`);
  });
  const eos = new Set(stopAtEos ? model.config.eosTokenIds : []);
  interface Active {
    index: number;
    seq: Sequence;
    policy?: HybridPolicy;
    sampler: Sampler;
    stream: TextStream;
    seen: number[];
    tokens: number[];
    text: string;
    /** The prefill's logits, from which the first token is sampled ... */
    logits: Float32Array;
    /** ... and the next token once a decode step has chosen it. */
    chosen?: number;
  }
  const results: GenerateResult[] = new Array(prompts.length);
  const active: Active[] = [];
  try {
    // The model may be disposed while this awaits; then nothing more may touch it.
    const stillLive = () => {
      if (model.isDisposed) throw disposedDuringGeneration("model");
    };
    for (const [index, ids] of encoded.entries()) {
      signal?.throwIfAborted();
      const { seq, policy } = startSequence(model, hybrid);
      active.push({ index, seq, policy, sampler: new Sampler({ ...o, seed: o.seed === undefined ? undefined : o.seed + index }),
        stream: new TextStream(model, stop), seen: [...ids], tokens: [], text: "", logits: new Float32Array() });
      active[active.length - 1].logits = model.decoder.prefill(seq, ids, { chunkSize: prefillChunk });
      await yieldToEventLoop();
      stillLive();
    }
    while (active.length) {
      const stepping: Active[] = [];
      const nextIds: number[] = [];
      for (const a of active) {
        const finish = (reason: FinishReason, extra = "") => {
          results[a.index] = { text: a.text + extra, tokens: a.tokens, finishReason: reason, hybrid: a.policy?.state };
          a.seq.dispose();
        };
        if (maxNewTokens === 0) { finish("length"); continue; }
        const next = a.chosen ?? a.sampler.next(a.logits, a.seen);
        a.seen.push(next);
        a.tokens.push(next);
        if (eos.has(next)) { finish("eos", a.stream.flush()); continue; }
        const { text, stopped } = a.stream.push(next);
        a.text += text;
        if (stopped) { finish("stop"); continue; }
        if (a.tokens.length === maxNewTokens) { finish("length", a.stream.flush()); continue; }
        if (a.seq.length + 1 > maxContext) { finish("context", a.stream.flush()); continue; }
        stepping.push(a);
        nextIds.push(next);
      }
      active.length = 0;
      active.push(...stepping);
      if (!active.length) break;
      signal?.throwIfAborted();
      const tokens = decodeNext(model.decoder, active.map((a) => a.seq), nextIds, active.map((a) => a.sampler), active.map((a) => a.seen));
      active.forEach((a, b) => (a.chosen = tokens[b]));
      await yieldToEventLoop();
      stillLive();
    }
    return results;
  } catch (err) {
    for (const a of active) a.seq.dispose();
    throw err;
  }
}
