// The decoder: creates sequences, prefills prompts into them (prefill.ts) and runs batched
// decode steps (decode-step.ts), replayed from CUDA graphs (decode-graph.ts) when it can. Each
// of these runs the one layer description of layer.ts.
import { type PagePool, PoolExhaustedError } from "../cache/page-pool";
import type { ModelConfig } from "../checkpoint/config";
import { checkTokenIds } from "../checkpoint/token-ids";
import type { ModelWeights } from "../checkpoint/weights";
import { type DeviceName, type DType, dtypeBytes, type PendingRead, Tensor } from "../runtime/tensor";
import { DecodeGraphs, type DecodeStats, type EagerReason } from "./decode-graph";
import { StepBuffers, tableWidths } from "./decode-step";
import { LaunchedStep, markCaches, rollBackStep } from "./launched-step";
import type { ModelParts } from "./layer";
import { type PrefillOutput, PrefillRun, prefillSequence } from "./prefill";
import { ropeInverseFrequencies } from "./rope";
import { Sequence, type SequenceHooks } from "./sequence";

export interface PrefillOptions {
  /** Prompt tokens per chunk (default: the decoder's prefillChunk). */
  chunkSize?: number;
  /** Return the logits after every token [tokens · vocab], not only the last (tests). */
  allLogits?: boolean;
  /**
   * Return instead the log-probability of targets[i] after token i, for i < targets.length <=
   * tokens (teacher-forced scoring): computed where the logits are, one number per token read back.
   */
  targets?: readonly number[];
}

/**
 * What a decode step reads back: every sequence's logits [batch · vocab] (row b for sequence b),
 * only each one's most likely token [batch] (lowest id on ties), or nothing.
 */
export type StepReadback = "logits" | "argmax" | "none";
const stepReadbacks: readonly string[] = ["logits", "argmax", "none"] satisfies StepReadback[];

/**
 * What a decode step does with its logits: a readback, or a function handed the logits
 * [batch, vocab] where the step left them (on the device on CUDA), valid only while it runs.
 */
export type StepOutput<T = unknown> = StepReadback | ((logits: Tensor) => T);

// Each prefill chunk costs the same few dozen native calls per layer whatever its length, and
// every chunk after the first reads its cached prefix through page tables: fewer, longer chunks
// run faster (bench/README.md, "Figures behind choices"). A chunk's activations bound it: the
// gate|up projection, the largest, stays within a budget: a sixteenth of what the device has to
// spare once the weights and the KV pool are in, at least 1 GiB and at most 4 GiB.
const prefillActivationBytes = { min: 2 ** 30, max: 2 ** 32 };
const prefillChunkRange = { min: 1024, max: 65536 };

/**
 * The gate|up activation budget of one prefill chunk, given the device memory left over after the
 * weights and the KV pool: a sixteenth of it, within [1 GiB, 4 GiB].
 * @example prefillActivationBudget(31 * 2 ** 30) // 1.94 GiB: a 32K chunk of Llama-3-8B on an 80 GB card
 */
export function prefillActivationBudget(spareBytes: number): number {
  return Math.min(prefillActivationBytes.max, Math.max(prefillActivationBytes.min, Math.floor(spareBytes / 16)));
}

/**
 * Prompt tokens per prefill chunk unless a session asks for another: the largest power of two in
 * [1024, 65536] whose gate|up activations (2 · intermediateSize elements a token) fit the budget
 * and number fewer than 2^31 elements (so that no kernel indexing it with 32 bits can overflow).
 * @example defaultPrefillChunk({ intermediateSize: 14336 }, 2) // 16384 (Llama-3-8B in bf16, 1 GiB)
 * @example defaultPrefillChunk({ intermediateSize: 14336 }, 2, 2 ** 31) // 32768
 * @example defaultPrefillChunk({ intermediateSize: 14336 }, 2, 2 ** 32) // 65536 (an H200's budget)
 */
export function defaultPrefillChunk(
  config: Pick<ModelConfig, "intermediateSize">,
  elementBytes: number,
  activationBytes: number = prefillActivationBytes.min,
): number {
  const perToken = 2 * config.intermediateSize;
  const fits = Math.min(activationBytes / (perToken * elementBytes), (2 ** 31 - 1) / perToken);
  let chunk = prefillChunkRange.max;
  while (chunk > prefillChunkRange.min && !(chunk <= fits)) chunk /= 2;
  return chunk;
}

/**
 * Runs a model's layers over sequences.
 * @example
 * const seq = decoder.createSequence();
 * const logits = decoder.prefill(seq, promptIds);
 * const next = decoder.step([seq], [argmax(logits)], "argmax");
 * seq.dispose();
 */
export class Decoder {
  private readonly parts: ModelParts;
  private readonly graphs: DecodeGraphs | undefined;
  /** The step launchGreedy launched last, while no other step has run since: the next may chain on it. */
  private lastLaunch: LaunchedStep | undefined;
  private readonly counts: DecodeStats = {
    graphSteps: 0,
    chainedSteps: 0,
    eagerSteps: {},
    recordings: 0,
    fillMs: 0,
    launchMs: 0,
    readbackMs: 0,
    uploadedBytes: 0,
  };

  /** Prompt tokens per prefill chunk unless asked otherwise (defaultPrefillChunk of this model and device). */
  readonly prefillChunk: number;

  constructor(
    readonly config: ModelConfig,
    readonly weights: ModelWeights,
    readonly pool: PagePool,
    readonly device: DeviceName,
    /** Activations and KV cache dtype: f32 on the CPU, the weights' 16-bit type on CUDA. */
    readonly dtype: DType,
    /** Gate|up bytes a default prefill chunk may take (prefillActivationBudget). */
    prefillActivationBytes?: number,
  ) {
    this.prefillChunk = defaultPrefillChunk(config, dtypeBytes(dtype), prefillActivationBytes);
    const invFreq = Tensor.from(ropeInverseFrequencies(config), [config.headDim / 2], { device });
    this.parts = { config, weights, pool, invFreq, device, dtype };
    this.graphs = device === "cpu" ? undefined : new DecodeGraphs(this.parts, this.counts);
  }

  /**
   * How decode steps ran: replayed, or op by op and why.
   * @example console.log(model.decoder.stats.eagerSteps); // { "observing queries": 4 }
   */
  get stats(): DecodeStats {
    return { ...this.counts, eagerSteps: { ...this.counts.eagerSteps } };
  }

  /**
   * A new, empty sequence over this decoder's pool, whose steps call `hooks` (a hybrid policy).
   * @example
   * const seq = decoder.createSequence(new HybridPolicy(decoder, resolveHybrid({ mode: "auto" }, layers)));
   */
  createSequence(hooks?: SequenceHooks): Sequence {
    return new Sequence(this.pool, this.config.layers, this.config.slidingWindow, hooks);
  }

  /**
   * Runs prompt tokens through the model into `seq`'s caches, in chunks of at most `chunkSize`
   * tokens, layer-major (a hybrid policy cuts layer i before layer i + 1 allocates anything).
   * Returns the logits [vocab] after the last token, with `allLogits` those after every token
   * [tokens · vocab], or with `targets` their log-probabilities [targets.length]. All or
   * nothing: if it fails, `seq` is as it was.
   * @example const logits = decoder.prefill(seq, ids, { chunkSize: 1024 });
   * @example const logprobs = decoder.prefill(seq, continuation, { targets: continuation.slice(1) });
   */
  prefill(seq: Sequence, ids: readonly number[], options: PrefillOptions = {}): Float32Array {
    const output = this.checkPrefill(seq, ids, options);
    return prefillSequence(this.parts, seq, ids, options.chunkSize ?? this.prefillChunk, output);
  }

  /**
   * Starts the prefill that prefill() runs in one call, to be run a few units at a time
   * (PrefillRun: advance() until done, then finish(); cancel() puts the sequence back). Until it
   * ends, the sequence takes no other prefill or step.
   * @example
   * const run = decoder.startPrefill(seq, ids);
   * while (!run.done) run.advance(512 * decoder.config.layers);
   * const logits = run.finish();
   */
  startPrefill(seq: Sequence, ids: readonly number[], options: PrefillOptions = {}): PrefillRun {
    const output = this.checkPrefill(seq, ids, options);
    return new PrefillRun(this.parts, seq, ids, options.chunkSize ?? this.prefillChunk, output);
  }

  private checkPrefill(seq: Sequence, ids: readonly number[], options: PrefillOptions): PrefillOutput {
    checkTokenIds(ids, this.config.vocabSize, "prefill: ids");
    if (ids.length === 0) throw new RangeError("prefill needs at least one token");
    this.checkLive(seq, "prefill");
    const { targets } = options;
    if (targets !== undefined) {
      if (options.allLogits) throw new TypeError("prefill: give allLogits or targets, not both");
      checkTokenIds(targets, this.config.vocabSize, "prefill: targets");
      if (targets.length > ids.length)
        throw new RangeError(`prefill: ${targets.length} targets for ${ids.length} tokens; give at most one per token`);
    }
    return targets !== undefined ? { targets } : options.allLogits ? "all" : "last";
  }

  /**
   * One decode step for a batch: token ids[b] is appended to sequence b, and `output` says what
   * comes back (StepOutput). On CUDA the step is replayed from a CUDA graph unless a sequence
   * observes its queries, graphs are off (LIGHTTRANSFER_DECODE_GRAPHS=off) or a recording
   * failed; then, and on the CPU, it runs op by op (stats.eagerSteps counts why). A step that
   * throws before its tokens are in leaves every sequence as it was (its caches' lengths and
   * pages; rollBackStep says why their contents need nothing more); an error from `output` or a
   * hook's afterStep comes after: every sequence holds its token (its length says so).
   * @example
   * const tokens = decoder.step(seqs, ids, "argmax");
   * const logits = decoder.step(seqs, ids, "logits");
   * const top = decoder.step(seqs, ids, (logits) => readTopCandidates(logits));
   */
  step(seqs: readonly Sequence[], ids: readonly number[], output: "logits"): Float32Array;
  step(seqs: readonly Sequence[], ids: readonly number[], output: "argmax"): Int32Array;
  step(seqs: readonly Sequence[], ids: readonly number[], output: "none"): undefined;
  step<T>(seqs: readonly Sequence[], ids: readonly number[], output: (logits: Tensor) => T): T;
  step(seqs: readonly Sequence[], ids: readonly number[], output: StepOutput): unknown {
    if (typeof output !== "function" && !stepReadbacks.includes(output))
      throw new TypeError(
        `decode: output must be one of ${stepReadbacks.join(", ")} or a function of the logits, got ${JSON.stringify(output)}`,
      );
    this.checkStep(seqs, ids);
    const { buffers, replayed } = this.runStep(seqs, ids);
    let result: unknown;
    try {
      if (typeof output === "function") result = output(buffers.logits);
      else {
        const t0 = performance.now();
        result = output === "logits" ? buffers.logits.toFloat32Array() : output === "argmax" ? buffers.tokens.toArray() : undefined;
        if (replayed) this.counts.readbackMs += performance.now() - t0;
      }
    } finally {
      // A replayed step's buffers stay with its recording.
      if (!replayed) buffers.dispose();
    }
    for (const s of seqs) s.hooks.afterStep?.(s);
    return result;
  }

  /**
   * Whether a decode step of `seqs` would be replayed from a CUDA graph now (Decoder.step says
   * when it is not): only then does launchGreedy return before the step has run.
   * @example if (decoder.replays(seqs)) ahead = decoder.launchGreedy(seqs, current);
   */
  replays(seqs: readonly Sequence[]): boolean {
    return this.eagerReason(seqs) === undefined;
  }

  /**
   * Launches a greedy decode step (Decoder.step with "argmax") and returns before it has run:
   * LaunchedStep.tokens() waits for its tokens, while the host goes on (turning the last step's
   * tokens into text, say). `ids` are the tokens to append, or the step launched last over the
   * same sequences in the same order, whose tokens are then appended where they are, on the
   * device, without waiting for them: so step t + 1 can be queued before step t's tokens are
   * back. Every sequence holds the step's token from the launch (its length says so). A step
   * that is not replayed from a graph (Decoder.replays) runs before this returns; one that
   * cannot chain on `ids` (another batch, a graph recorded since) waits for its tokens first.
   * Throws, with nothing changed, as step() does.
   * @example
   * let current = decoder.launchGreedy([seq], [first]);
   * const next = decoder.launchGreedy([seq], current); // queued behind current
   * const tokens = current.tokens();                  // current's alone
   */
  launchGreedy(seqs: readonly Sequence[], ids: readonly number[] | LaunchedStep): LaunchedStep {
    const previous = ids instanceof LaunchedStep ? ids : undefined;
    if (previous) previous.checkFollowedBy(seqs);
    const chained =
      previous !== undefined &&
      previous === this.lastLaunch &&
      previous.replayed !== undefined &&
      this.replays(seqs) &&
      this.graphs!.current(seqs) === previous.replayed;
    const hostIds = chained ? undefined : previous ? Array.from(previous.tokens()) : (ids as readonly number[]);
    if (hostIds) this.checkStep(seqs, hostIds);
    else {
      this.checkBatch(seqs);
      this.checkPages(seqs);
    }
    const lengths = seqs.map((s) => s.length);
    const { buffers, replayed, marks } = this.runStep(seqs, hostIds);
    let tokens: PendingRead | Int32Array;
    try {
      tokens = replayed ? buffers.tokens.readLater() : (buffers.tokens.toArray() as Int32Array);
    } catch (err) {
      // The step ran, or is queued, but its tokens cannot come back: it is taken back out.
      rollBackStep(seqs, marks);
      for (const s of seqs) s.length -= 1;
      this.lastLaunch = undefined;
      throw err;
    } finally {
      if (!replayed) buffers.dispose();
    }
    // Its own copy of the batch: undo() finds a sequence's row by its place in it.
    const launched = new LaunchedStep({ seqs: [...seqs], lengths, marks }, this.counts, replayed, tokens);
    this.lastLaunch = launched;
    return launched;
  }

  /**
   * Runs or launches one step of ids[b] (or, undefined, the tokens the last replayed step chose,
   * taken on the device) appended to seqs[b]: reserves each cache's slot, replays the graph or
   * runs op by op, and counts the token in each sequence. Undoes the reservations if it throws.
   */
  private runStep(
    seqs: readonly Sequence[],
    ids: readonly number[] | undefined,
  ): { buffers: StepBuffers; replayed: StepBuffers | undefined; marks: Int32Array } {
    const reason = this.eagerReason(seqs);
    const marks = markCaches(seqs);
    this.lastLaunch = undefined;
    let replayed: StepBuffers | undefined, buffers: StepBuffers;
    try {
      replayed = reason === undefined ? this.graphs!.run(seqs, ids) : undefined;
      // A chained step (no ids) runs only over the recording that chose its tokens.
      if (!replayed && !ids) throw new Error("internal: a chained decode step could not be replayed");
      buffers = replayed ?? this.runEager(seqs, ids!, reason ?? "recording failed");
    } catch (err) {
      rollBackStep(seqs, marks);
      throw err;
    }
    for (const s of seqs) s.length += 1;
    return { buffers, replayed, marks };
  }

  dispose(): void {
    this.lastLaunch = undefined;
    this.graphs?.dispose();
    this.parts.invFreq.dispose();
  }

  /** Why this step cannot be replayed from a graph, or undefined if it can. */
  private eagerReason(seqs: readonly Sequence[]): EagerReason | undefined {
    if (!this.graphs) return "cpu";
    if (process.env.LIGHTTRANSFER_DECODE_GRAPHS === "off") return "graphs off";
    if (this.counts.unavailable !== undefined) return "recording failed";
    if (seqs.some((s) => s.observesQueries)) return "observing queries";
    return undefined;
  }

  /** The step op by op over buffers of its exact shape (the caller disposes them); observing hooks see each layer's queries. */
  private runEager(seqs: readonly Sequence[], ids: readonly number[], reason: EagerReason): StepBuffers {
    this.counts.eagerSteps[reason] = (this.counts.eagerSteps[reason] ?? 0) + 1;
    const buffers = new StepBuffers(this.parts, seqs.length, tableWidths(seqs, this.config.layers));
    try {
      buffers.fill(seqs, ids);
      buffers.block.write(buffers.host);
      const observing = seqs.filter((s) => s.observesQueries);
      buffers.run(
        observing.length === 0
          ? undefined
          : (layer, q) =>
              seqs.forEach((s, b) => {
                if (!observing.includes(s)) return;
                const row = q.rows(b, 1);
                try {
                  s.hooks.observeQueries?.(s, layer, row, s.length);
                } finally {
                  row.dispose();
                }
              }),
      );
      return buffers;
    } catch (err) {
      buffers.dispose();
      throw err;
    }
  }

  private checkLive(seq: Sequence, what: string): void {
    if (!(seq instanceof Sequence)) throw new TypeError(`${what} needs a Sequence made by decoder.createSequence()`);
    if (seq.disposed) throw new Error(`${what}: this sequence was disposed; create a new one with decoder.createSequence()`);
    if (seq.damaged)
      throw new Error(`${what}: ${seq.damaged.message}; dispose this sequence and create a new one with decoder.createSequence()`, {
        cause: seq.damaged,
      });
    if (seq.prefillRun) throw new Error(`${what}: a prefill of this sequence is under way; finish or cancel it first`);
  }

  /**
   * Checks a decode step before it touches any cache: one valid token id per sequence, each
   * sequence live and in the batch once, and enough free pages for every cache that grows. A
   * step that failed part-way would leave some layers a token ahead of the others; checked
   * here, the pool running out is an error with nothing changed.
   */
  private checkStep(seqs: readonly Sequence[], ids: readonly number[]): void {
    checkTokenIds(ids, this.config.vocabSize, "decode: ids");
    if (!Array.isArray(seqs) || seqs.length !== ids.length || seqs.length === 0)
      throw new RangeError(
        `decode needs one token id per sequence (at least one), got ${ids.length} id(s) for ${Array.isArray(seqs) ? seqs.length : "no"} sequence(s)`,
      );
    this.checkBatch(seqs);
    this.checkPages(seqs);
  }

  private checkBatch(seqs: readonly Sequence[]): void {
    if (!Array.isArray(seqs) || seqs.length === 0) throw new RangeError("decode needs at least one sequence");
    for (const s of seqs) this.checkLive(s, "decode");
    if (new Set(seqs).size !== seqs.length)
      throw new RangeError("decode: a sequence appears more than once in the batch; each gets one token per step");
  }

  private checkPages(seqs: readonly Sequence[]): void {
    let wanted = 0;
    for (const s of seqs) for (const c of s.caches) wanted += c.pageCountAfter(1) - c.pageTable.length;
    if (wanted > this.pool.freePages) throw new PoolExhaustedError(wanted, this.pool.freePages, this.pool.numPages);
  }
}
