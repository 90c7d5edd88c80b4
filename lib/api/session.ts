// Sessions and batched generation: the generation loop (lib/generate) run for one sequence that
// persists across calls, or for many fresh ones at once.
import { type PagePool, PoolExhaustedError } from "../cache/page-pool";
import { fullCachePages } from "../common/geometry";
import { show } from "../common/validate";
import { ChatHistory, type ChatTurn } from "../generate/chat-history";
import { type GenerationCounters, type GenerationModel, generationLoop, whileLive } from "../generate/loop";
import {
  checkGenerateOptions,
  checkSessionOptions,
  type GenerateChunk,
  type GenerateOptions,
  type GenerateResult,
  type SessionOptions,
  type SessionSettings,
  splitOptions,
} from "../generate/options";
import { checkPromptFits, type Prompt, promptIdsAsync } from "../generate/prompt";
import { GenerationSequence } from "../generate/sequence";
import type { ResolvedHybrid } from "../hybrid/options";
import { promptPeakPages } from "../hybrid/planner";
import type { HybridState } from "../hybrid/policy";

export interface SessionStats {
  /** Prompt tokens prefilled, over every turn. */
  promptTokens: number;
  /** Tokens generated, over every turn (each turn's first comes from its prompt's prefill). */
  generatedTokens: number;
  /**
   * Tokens held in the cache now. The last token a turn generated is not among them until the
   * next turn feeds it (before its prompt), and counts towards maxContext there. Read during a
   * turn whose greedy steps are launched ahead, it may count the token just given too: the step
   * that feeds it is already running.
   */
  contextTokens: number;
  prefillTokensPerSecond: number;
  /** Tokens per second of the decode steps (a turn's first token is the prefill's). */
  decodeTokensPerSecond: number;
  /** KV bytes this session's caches hold now, and what full caches of every layer would hold. */
  kvBytes: number;
  kvBytesFull: number;
  /**
   * A snapshot of the lazy layers, lazy ratios and whether the choice is still pending, in every
   * mode (mode "off": no lazy layers, no ratios); changing it changes nothing in the session.
   */
  hybrid: HybridState;
}

/** What sessions and batches need of a loaded model: Model has it. */
export interface SessionModel extends GenerationModel {
  readonly pool: PagePool;
  readonly isDisposed: boolean;
}

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
  private sequence: GenerationSequence | undefined;
  private readonly settings: SessionSettings;
  private busy = false;
  /**
   * Tokens this session generated that its cache does not hold yet: a turn's last token is fed to
   * the model only by the step after it, which a finished turn never takes, so the next turn
   * feeds it before its prompt.
   */
  private unfed: number[] = [];
  /** The tokens the cache holds, in order: a repetition penalty counts the earlier turns too. */
  private context: number[] = [];
  /** The conversation as chat messages, which a later chat turn is rendered within. */
  private readonly chat = new ChatHistory();
  /** The stats as dispose() found them. */
  private lastStats: SessionStats | undefined;
  private readonly counters: GenerationCounters = {
    promptTokens: 0,
    generatedTokens: 0,
    decodedTokens: 0,
    prefillSeconds: 0,
    decodeSeconds: 0,
  };

  /** @internal use model.createSession */
  constructor(
    private readonly model: SessionModel,
    options: SessionOptions | undefined,
    private readonly onDispose: () => void,
  ) {
    this.settings = checkSessionOptions(options, model.decoder, "createSession");
    this.sequence = new GenerationSequence(model.decoder, this.settings.hybrid);
  }

  /**
   * Tokens, throughput and KV bytes so far, and a snapshot of the hybrid state: a fresh object on
   * every read. After dispose() (the session's, or its model's), the stats as they were just
   * before it, so that a `finally` may log them. An Error while a failed turn could not be put
   * back (it says why).
   * @example const { kvBytes, hybrid } = session.stats; console.log(hybrid.mode, hybrid.lazyLayers);
   */
  get stats(): SessionStats {
    if (!this.sequence) {
      if (!this.lastStats)
        throw new Error("this session was disposed while damaged, so it kept no stats; create a new one with model.createSession()");
      return structuredClone(this.lastStats);
    }
    const { seq, hybridState } = this.sequence;
    const { pool } = this.model;
    const full = this.model.config.layers * fullCachePages(seq.length, pool.pageSize) * pool.pageBytes;
    const c = this.counters;
    return {
      promptTokens: c.promptTokens,
      generatedTokens: c.generatedTokens,
      contextTokens: seq.length,
      prefillTokensPerSecond: c.promptTokens / Math.max(c.prefillSeconds, 1e-9),
      decodeTokensPerSecond: c.decodedTokens / Math.max(c.decodeSeconds, 1e-9),
      kvBytes: seq.caches.reduce((a, cache) => a + cache.bytes, 0),
      kvBytesFull: full,
      hybrid: hybridState,
    };
  }

  /**
   * Appends the prompt to this session's context and streams the continuation. The prompt is
   * text, chat messages, or token ids (`number[]` or `Int32Array`, each an integer below the
   * vocabulary size; a bad one is an Error naming its index). A later turn's chat messages are the
   * new ones only: they are rendered within the conversation so far (ChatHistory), and later text
   * goes in without the tokenizer's special tokens. A model loaded without a tokenizer
   * takes token ids only and yields chunks with token ids and empty text. Disposing the session
   * (or its model) while this runs ends it with an AbortError at the next step.
   * @example
   * for await (const chunk of session.generate("Why is the sky blue?", { maxNewTokens: 128, stop: ["\n\n"] }))
   *   process.stdout.write(chunk.text);
   * @example
   * for await (const chunk of session.generate(Int32Array.of(1, 15043, 29892), { maxNewTokens: 8 })) ids.push(...chunk.tokens);
   */
  async *generate(prompt: Prompt, options?: GenerateOptions): AsyncGenerator<GenerateChunk> {
    const settings = checkGenerateOptions(options, "generate");
    const sequence = this.live();
    if (this.busy) throw new Error("this session is already generating; wait for it or use another session");
    checkStopNeedsTokenizer(this.model, settings.stop, "generate");
    // Busy while the prompt is encoded too (a long one on the tokenizer's thread): a second turn
    // started meanwhile would take the tokens this one carries.
    this.busy = true;
    const owner = { name: "session" as const, isLive: () => this.sequence === sequence };
    let own: number[];
    let chatTurn: ChatTurn | undefined;
    const tokenizer = this.model.optionalTokenizer;
    try {
      // BOS and the like open a sequence; a later turn goes on from what the session holds.
      const held = sequence.length + this.unfed.length;
      const encoding = promptIdsAsync(tokenizer, prompt, this.model.config.vocabSize, "generate: prompt", {
        continuing: held > 0,
        renderChat: (messages) => {
          chatTurn = this.chat.turn(tokenizer!, messages, held);
          return chatTurn.text;
        },
      });
      own = await whileLive(owner, encoding, "generation", settings.signal);
    } finally {
      this.busy = false;
    }
    const carried = this.unfed;
    // An empty prompt after a reply goes on with that reply: its last token is the turn's whole input.
    const continuesReply = own.length === 0 && carried.length > 0;
    if (!continuesReply) checkPromptFits(own, sequence.length + carried.length, this.settings.maxContext, "the prompt");
    else if (sequence.length + carried.length > this.settings.maxContext)
      throw new RangeError(
        `generate: the reply cannot go on: the session holds ${sequence.length + carried.length} tokens with the reply's last, ` +
          `more than maxContext ${this.settings.maxContext}. Go on in a new session (createSession({ maxContext }) for a larger one)`,
      );
    if (sequence.length === 0) checkPromptPages(this.model, carried.length + own.length, this.settings.hybrid, "the prompt");
    const ids = [...carried, ...own];
    this.busy = true;
    const start = sequence.length;
    const generated: number[] = [];
    try {
      const loop = generationLoop(this.model, [{ sequence, ids, history: this.context }], {
        ...settings,
        ...this.settings,
        owner,
        releaseSequences: false,
        counters: this.counters,
      });
      for await (const { chunk } of loop) {
        generated.push(...chunk.tokens);
        yield chunk;
      }
    } finally {
      this.busy = false;
      // A turn whose prompt failed leaves the cache as it was (and the tokens unfed as they were).
      const fed = sequence.length - start - ids.length;
      if (this.sequence === sequence && fed >= 0) {
        // Not push(...): a turn can be longer than the arguments a call may take.
        this.context = this.context.concat(ids, generated.slice(0, fed));
        this.unfed = generated.slice(fed);
        // The carried tokens were counted as generated in their own turn, not as prompt.
        this.counters.promptTokens -= carried.length;
        const last = generated[generated.length - 1];
        const reply = { tokens: generated, endsWithEos: last !== undefined && this.model.config.eosTokenIds.includes(last) };
        if (chatTurn && tokenizer) this.chat.commit(tokenizer, chatTurn, reply);
        else if (continuesReply && tokenizer) this.chat.extendReply(tokenizer, reply);
        else this.chat.breakOff();
      }
    }
  }

  /**
   * Frees this session's KV pages; a generation in progress stops at its next step.
   * @example
   * const chat = model.createSession();
   * try {
   *   for (const question of questions) for await (const chunk of chat.generate(question)) process.stdout.write(chunk.text);
   * } finally {
   *   chat.dispose(); // its pages go back to the pool the model's other sessions share
   * }
   */
  dispose(): void {
    if (!this.sequence) return;
    try {
      this.lastStats = this.stats;
    } catch {
      // A damaged sequence has no stats to keep (reading them said why); it is disposed all the same.
    }
    this.sequence.dispose();
    this.sequence = undefined;
    this.onDispose();
  }

  /**
   * dispose(), for `await using`.
   * @example
   * await using chat = model.createSession(); // its KV pages go back when the block ends
   * for await (const chunk of chat.generate("Hello!", { maxNewTokens: 64 })) process.stdout.write(chunk.text);
   */
  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }

  private live(): GenerationSequence {
    if (!this.sequence) throw new Error("this session was disposed; create a new one with model.createSession()");
    return this.sequence;
  }
}

/**
 * Refuses a prompt that needs more KV pages while it is prefilled than the whole pool holds, which
 * could never run, saying what it needs; pages held by other sequences are the pool's own error.
 */
function checkPromptPages(model: SessionModel, tokens: number, hybrid: ResolvedHybrid, label: string): void {
  const { config, pool } = model;
  const peak = promptPeakPages(config, pool.pageSize, tokens, hybrid);
  if (peak > pool.numPages) throw new PoolExhaustedError(peak, pool.freePages, pool.numPages, `${label} (${tokens} tokens)`);
}

/** Stop strings are found in decoded text: without a tokenizer they are an error, before anything is prefilled. */
function checkStopNeedsTokenizer(model: SessionModel, stop: readonly string[], what: string): void {
  if (stop.length && !model.optionalTokenizer)
    throw new Error(
      `${what}: stop strings need a tokenizer, and this model was loaded without one; end the generation with maxNewTokens or at EOS instead`,
    );
}

/**
 * Batched generation: every prompt prefilled into a fresh sequence, then one decode step per token
 * for all the sequences still going; each gives its KV pages back as it finishes.
 * @example const results = await generateBatch(model, ["a", "b"], { maxNewTokens: 32 });
 */
export async function generateBatch(
  model: SessionModel,
  prompts: readonly Prompt[],
  options?: GenerateOptions & SessionOptions,
): Promise<GenerateResult[]> {
  const parts = splitOptions(options, "generateBatch");
  const settings = checkGenerateOptions(parts.generate, "generateBatch");
  const session = checkSessionOptions(parts.session, model.decoder, "generateBatch");
  if (!Array.isArray(prompts)) throw new TypeError(`generateBatch: prompts must be an array of prompts, got ${show(prompts)}`);
  checkStopNeedsTokenizer(model, settings.stop, "generateBatch");
  const owner = { name: "model" as const, isLive: () => !model.isDisposed };
  const encoded: number[][] = [];
  for (const [i, p] of prompts.entries()) {
    settings.signal?.throwIfAborted();
    encoded.push(
      await whileLive(
        owner,
        promptIdsAsync(model.optionalTokenizer, p, model.config.vocabSize, `generateBatch: prompts[${i}]`),
        "generation",
        settings.signal,
      ),
    );
  }
  encoded.forEach((ids, i) => {
    checkPromptFits(ids, 0, session.maxContext, `prompt ${i}`);
    checkPromptPages(model, ids.length, session.hybrid, `prompt ${i}`);
  });
  const sequences: GenerationSequence[] = [];
  try {
    for (const _ of encoded) sequences.push(new GenerationSequence(model.decoder, session.hybrid));
  } catch (err) {
    for (const s of sequences) s.dispose();
    throw err;
  }
  const results: GenerateResult[] = encoded.map(() => ({
    text: "",
    tokens: [],
    finishReason: "length",
    ...(settings.logprobs !== undefined && { logprobs: [] }),
  }));
  const loop = generationLoop(
    model,
    encoded.map((ids, i) => ({ sequence: sequences[i], ids })),
    { ...settings, ...session, owner, releaseSequences: true },
  );
  for await (const { index, chunk } of loop) {
    const result = results[index];
    result.text += chunk.text;
    result.tokens.push(...chunk.tokens);
    if (chunk.logprobs) result.logprobs?.push(...chunk.logprobs);
    if (chunk.finishReason) {
      result.finishReason = chunk.finishReason;
      result.hybrid = sequences[index].hybridState;
    }
  }
  return results;
}
