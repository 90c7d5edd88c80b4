// The generation loop's machinery, one step at a time, for a set of sequences that may change
// between steps: a sequence is admitted with its prompt, prefilled (in one call, or a part of the
// work at a time with other sequences' steps between), then decoded with the others, one token per
// step, until a stop rule ends it (EOS, a stop string, maxNewTokens, maxContext). generationLoop (loop.ts) runs it for a fixed set
// of prompts; the server's scheduler admits and removes sequences while others run.
import type { ModelConfig } from "../checkpoint/config";
import type { Tokenizer } from "../checkpoint/tokenizer";
import type { Decoder } from "../model/decoder";
import type { LaunchedStep } from "../model/launched-step";
import { synchronize } from "../runtime/devices";
import { describeLogprobs, type LogprobIds, rowLogprobs } from "./logprobs";
import type { FinishReason, GenerateChunk } from "./options";
import { Sampler, type SamplingOptions } from "./sampling";
import type { GenerationSequence } from "./sequence";
import { nextTokens, nextTokensWithLogprobs } from "./step";
import { TextStream } from "./text-stream";

/** What generation needs of a loaded model (lib/api's Model has it). */
export interface GenerationModel {
  readonly config: ModelConfig;
  /** Undefined when the model was loaded without one: chunks then carry token ids and empty text. */
  readonly optionalTokenizer: Tokenizer | undefined;
  readonly decoder: Decoder;
}

/** Time and tokens a generation spent, added up across generations (a session's stats). */
export interface GenerationCounters {
  promptTokens: number;
  /** Every token chosen: a prompt's first from its prefill's logits, the others by decode steps. */
  generatedTokens: number;
  /** The tokens decode steps chose (what decodeSeconds was spent on). */
  decodedTokens: number;
  prefillSeconds: number;
  decodeSeconds: number;
}

/** One sequence's stop rules and sampling, checked by the caller. */
export interface MemberSettings {
  sampling: SamplingOptions;
  maxNewTokens: number;
  stop: readonly string[];
  stopAtEos: boolean;
  maxContext: number;
  prefillChunk: number;
  /** Give each token's log-probability and this many alternatives (GenerateOptions.logprobs). */
  logprobs?: number;
}

/**
 * A sequence in a stepper, from admission to its last chunk: its prompt still to prefill, its
 * sampler and text stream, and the tokens it has seen (prompt included).
 */
export class StepperMember {
  /** Prompt tokens not prefilled yet. */
  pending: number[];
  /**
   * Tokens seen so far: what the sequence held when admitted, the prompt, the tokens generated (a
   * repetition penalty reads them; a preempted member re-prefills them).
   */
  readonly seen: number[];
  /** The distinct ids of `seen`, kept as it grows: a penalty reads them every step, and a session's can be long. */
  readonly seenIds: Set<number>;
  generated = 0;
  /** Whether it is in a stepper now (not yet finished, removed or preempted). */
  running = false;
  readonly sampler: Sampler;
  readonly stream: TextStream;

  /** Made by GenerationStepper.admit. */
  constructor(
    readonly sequence: GenerationSequence,
    prompt: readonly number[],
    readonly settings: MemberSettings,
    tokenizer: Tokenizer | undefined,
    history: readonly number[],
  ) {
    this.pending = [...prompt];
    this.seen = [...history, ...prompt];
    this.seenIds = new Set(this.seen);
    this.sampler = new Sampler(settings.sampling);
    this.stream = new TextStream(tokenizer, settings.stop);
  }

  /** Whether part of its prompt is still to be prefilled. */
  get prefilling(): boolean {
    return this.pending.length > 0;
  }
}

/**
 * When step() launches the next greedy step before the current one's tokens are back (so that
 * the GPU runs it while the host turns those tokens into chunks and the caller handles them):
 * "replayed" when the step is replayed from a CUDA graph (the default; the environment variable
 * LIGHTTRANSFER_LAUNCH_AHEAD=off makes it "never"), "always" also when it runs op by op (where
 * it only costs: tests of the stepper use it on the CPU), or "never".
 */
export type LaunchAhead = "replayed" | "always" | "never";

/** A greedy step launched over `members` before the step it follows had given its tokens. */
interface AheadStep {
  members: readonly StepperMember[];
  launched: LaunchedStep;
  /** Members taken out since (finished, removed, preempted): the step's token was taken back out of them. */
  dropped: Set<StepperMember>;
}

/**
 * Runs sequences one step at a time: admit() adds one, prefill() runs its prompt (or part of the
 * work) and, once the prompt is in, gives its first chunk; step() decodes one token for every
 * sequence whose prompt is in and gives each one's chunk. A sequence whose chunk ends it leaves the
 * stepper (its pages released at once with `releaseSequences`); remove() takes one out early,
 * preempt() takes one out and frees its pages so it can be admitted again later and go on from
 * where it was (its tokens re-prefilled).
 *
 * Greedy steps are launched one ahead (LaunchAhead): step() returns the chunks of one step while
 * the next already runs over the same members, its tokens taken on the device. A member that then
 * leaves has that step's token taken back out of its sequence, and settle() takes it back out of
 * all of them: call it when leaving a stepper that still has members (the generation loop does).
 * @example
 * const stepper = new GenerationStepper(model, { releaseSequences: true });
 * const member = stepper.admit(sequence, ids, settings);
 * let { chunk } = stepper.prefill(member);
 * while (stepper.decoding.length) for (const { chunk } of stepper.step()) process.stdout.write(chunk.text);
 */
export class GenerationStepper {
  private readonly members: StepperMember[] = [];
  private ahead: AheadStep | undefined;
  /** Whether prefill work was queued behind the step launched ahead (the next step() waits for it before it launches another). */
  private prefilledBehind = false;

  constructor(
    private readonly model: GenerationModel,
    private readonly options: { releaseSequences: boolean; counters?: GenerationCounters; launchAhead?: LaunchAhead },
  ) {}

  /** Sequences in the stepper, in admission order. */
  get active(): readonly StepperMember[] {
    return this.members;
  }

  /** Sequences whose prompt is in: the next step() decodes them. */
  get decoding(): StepperMember[] {
    return this.members.filter((m) => !m.prefilling);
  }

  /**
   * Adds a sequence with the prompt to append to it, and the tokens it holds already (`history`,
   * in order); nothing runs until prefill().
   * @example const member = stepper.admit(new GenerationSequence(decoder, hybrid), ids, settings);
   */
  admit(sequence: GenerationSequence, prompt: readonly number[], settings: MemberSettings, history: readonly number[] = []): StepperMember {
    if (prompt.length === 0) throw new RangeError("a prompt to admit needs at least one token");
    if (history.length !== sequence.length)
      throw new Error(`internal: a sequence of ${sequence.length} tokens admitted with a history of ${history.length}`);
    const member = new StepperMember(sequence, prompt, settings, this.model.optionalTokenizer, history);
    return this.readmit(member);
  }

  /**
   * Puts a preempted member back; its tokens so far are prefilled again before it goes on.
   * @example stepper.readmit(preempted);
   */
  readmit(member: StepperMember): StepperMember {
    if (member.running) throw new Error("internal: a member admitted twice");
    member.running = true;
    this.members.push(member);
    return member;
  }

  /**
   * Prefills the member's pending prompt: all of it by default, or about `work` of it (tokens
   * through one layer each, at least one chunk through one layer), so that the others' decode
   * steps run between calls; the next call goes on where this one stopped (Decoder.startPrefill:
   * layer by layer, so a hybrid policy still cuts each layer before the next one allocates).
   * Returns the work done and, once the whole prompt is in, the member's first chunk. All or
   * nothing: if it throws (the pool running out, say), the member is as it was before its
   * prompt's prefill began.
   * @example const { chunk, work } = stepper.prefill(member, 512 * model.config.layers);
   */
  prefill(member: StepperMember, work = Number.POSITIVE_INFINITY): { work: number; chunk?: GenerateChunk } {
    if (!member.running || !member.prefilling) throw new Error("internal: prefill of a member that has no prompt pending");
    const sequence = member.sequence;
    const t0 = performance.now();
    if (this.ahead) this.prefilledBehind = true;
    if (!sequence.prefilling) sequence.startPrefill(member.pending, member.settings.prefillChunk);
    const { work: done, logits } = sequence.continuePrefill(work);
    const counters = this.options.counters;
    if (counters) counters.prefillSeconds += (performance.now() - t0) / 1000;
    if (!logits) return { work: done };
    if (counters) {
      counters.promptTokens += member.pending.length;
      // The prompt's logits choose the first token, unless none is wanted.
      if (member.settings.maxNewTokens > 0) counters.generatedTokens += 1;
    }
    member.pending = [];
    const k = member.settings.logprobs;
    const chunk = this.chunkOf(
      member,
      () => member.sampler.next(logits, member.seenIds),
      k === undefined ? undefined : (next) => rowLogprobs(logits, next, k),
    );
    return { work: done, chunk };
  }

  /**
   * One decode step for every member whose prompt is in, and each one's chunk. If the pool
   * cannot hold the step's new tokens it throws PoolExhaustedError with nothing changed. A step
   * launched ahead by the last call runs over the members it was launched over; one whose prompt
   * came in since joins the step after.
   * @example for (const { member, chunk } of stepper.step()) deliver(member, chunk);
   */
  step(): Array<{ member: StepperMember; chunk: GenerateChunk }> {
    const batch = this.decoding;
    if (batch.length === 0) return [];
    const t0 = performance.now();
    let current = this.ahead;
    this.ahead = undefined;
    if (!current) {
      // No step ran ahead for a prefill to be queued behind.
      this.prefilledBehind = false;
      if (!this.launchesAhead(batch)) return this.stepNow(batch, t0);
      const launched = this.model.decoder.launchGreedy(
        batch.map((m) => m.sequence.seq),
        batch.map((m) => m.seen[m.seen.length - 1]),
      );
      current = { members: batch, launched, dropped: new Set() };
    }
    const members = current.members.filter((m) => !current.dropped.has(m));
    let next: AheadStep | undefined, tokens: Int32Array;
    try {
      // Prefill work queued behind the step is waited for before the next step is queued, as a
      // step not launched ahead waits for the work queued before it: so that each call's chunks
      // come after the work done since the last (a server's inter-token gaps stay even), not
      // early in one call and late in the next.
      if (this.prefilledBehind) synchronize(this.model.decoder.device);
      this.prefilledBehind = false;
      next = this.launchAfter(current, members, batch);
      tokens = current.launched.tokens();
    } catch (err) {
      // No chunk gives either step's token: both come back out of the sequences.
      next?.launched.undo();
      current.launched.undo(members.map((m) => m.sequence.seq));
      throw err;
    }
    this.ahead = next;
    this.count(members.length, t0);
    return current.members.flatMap((member, b) =>
      current.dropped.has(member) ? [] : [{ member, chunk: this.chunkOf(member, () => tokens[b]) }],
    );
  }

  /**
   * Takes a step launched ahead back out of the members it was launched over, so that each
   * sequence holds exactly the tokens its chunks gave. Call it when leaving a stepper whose
   * members are to be kept (a session's sequence); step() goes on as before after it.
   * @example try { ... } finally { stepper.settle(); }
   */
  settle(): void {
    const ahead = this.ahead;
    this.ahead = undefined;
    ahead?.launched.undo(ahead.members.filter((m) => !ahead.dropped.has(m)).map((m) => m.sequence.seq));
  }

  /** One step of `batch` run to its end before its chunks are made: sampling, logprobs, or steps not launched ahead. */
  private stepNow(batch: StepperMember[], t0: number): Array<{ member: StepperMember; chunk: GenerateChunk }> {
    const args = [
      this.model.decoder,
      batch.map((m) => m.sequence.seq),
      batch.map((m) => m.seen[m.seen.length - 1]),
      batch.map((m) => m.sampler),
      batch.map((m) => m.seenIds),
    ] as const;
    // Alternatives as many as the member asking for most wants; the others take the first of them.
    const k = Math.max(-1, ...batch.map((m) => m.settings.logprobs ?? -1));
    const { tokens, logprobs } = k < 0 ? { tokens: nextTokens(...args), logprobs: undefined } : nextTokensWithLogprobs(...args, k);
    this.count(batch.length, t0);
    return batch.map((member, b) => {
      const own = member.settings.logprobs;
      const lp = logprobs && own !== undefined ? () => ({ ...logprobs[b], top: logprobs[b].top.slice(0, own) }) : undefined;
      return { member, chunk: this.chunkOf(member, () => tokens[b], lp) };
    });
  }

  private count(tokens: number, t0: number): void {
    const counters = this.options.counters;
    if (!counters) return;
    counters.decodeSeconds += (performance.now() - t0) / 1000;
    counters.generatedTokens += tokens;
    counters.decodedTokens += tokens;
  }

  /**
   * Whether `batch`'s steps are launched ahead (LaunchAhead): greedy members without logprobs
   * only, and none whose hooks observe its queries (a pending hybrid choice, made in a step's
   * afterStep, must not come after the next step has run).
   */
  private launchesAhead(batch: readonly StepperMember[]): boolean {
    const mode = this.options.launchAhead ?? (process.env.LIGHTTRANSFER_LAUNCH_AHEAD === "off" ? "never" : "replayed");
    if (mode === "never" || !batch.every((m) => m.sampler.greedy && m.settings.logprobs === undefined)) return false;
    const seqs = batch.map((m) => m.sequence.seq);
    return mode === "always" ? !seqs.some((s) => s.observesQueries) : this.model.decoder.replays(seqs);
  }

  /**
   * The step after `current`, launched now over the same `members` with current's tokens taken
   * on the device: unless members joined or left (`decoding` is who decodes now), one of them surely ends with current's token
   * (maxNewTokens, maxContext), or a prompt is being prefilled beside them (its sequence would
   * come in while the step runs and wait for the one after it). A launch that fails leaves
   * nothing changed, and the next step() runs in the ordinary way, reporting the error if it
   * comes again.
   */
  private launchAfter(current: AheadStep, members: StepperMember[], decoding: readonly StepperMember[]): AheadStep | undefined {
    if (members.length !== decoding.length || members.some((m, b) => m !== decoding[b]) || !this.launchesAhead(members)) return undefined;
    if (members.some((m) => m.generated + 1 >= m.settings.maxNewTokens || m.sequence.length + 1 > m.settings.maxContext)) return undefined;
    if (this.members.some((m) => m.prefilling)) return undefined;
    try {
      const launched = this.model.decoder.launchGreedy(
        members.map((m) => m.sequence.seq),
        current.dropped.size
          ? Array.from(current.launched.tokens()).filter((_, b) => !current.dropped.has(current.members[b]))
          : current.launched,
      );
      return { members, launched, dropped: new Set() };
    } catch {
      return undefined;
    }
  }

  /** Whether the step launched ahead holds a token of `member`'s. */
  private aheadHolds(member: StepperMember): boolean {
    const ahead = this.ahead;
    return ahead?.members.includes(member) === true && !ahead.dropped.has(member);
  }

  /** Takes a step launched ahead back out of `member` as it leaves. */
  private takeBack(member: StepperMember): void {
    const ahead = this.ahead;
    if (!ahead || !this.aheadHolds(member)) return;
    ahead.launched.undo([member.sequence.seq]);
    ahead.dropped.add(member);
    if (ahead.members.every((m) => ahead.dropped.has(m))) this.ahead = undefined;
  }

  /**
   * Ends a member now with `reason`, giving the text it still held back; it leaves the stepper.
   * @example const last = stepper.finish(member, "context");
   */
  finish(member: StepperMember, reason: FinishReason): GenerateChunk {
    this.remove(member);
    return { text: member.stream.flush(), tokens: [], finishReason: reason };
  }

  /** Takes a member out (a cancelled request), releasing its sequence with `releaseSequences`. */
  remove(member: StepperMember): void {
    const at = this.members.indexOf(member);
    if (at < 0) return;
    this.takeBack(member);
    this.members.splice(at, 1);
    member.running = false;
    if (this.options.releaseSequences) member.sequence.dispose();
    else member.sequence.cancelPrefill();
  }

  /**
   * Takes a member out and frees its pages, keeping its sampler, text stream and tokens: once
   * readmitted, every token it has seen is prefilled again into a fresh sequence and it goes on
   * from there, its history included.
   * @example stepper.preempt(newest); waiting.unshift(newest);
   */
  preempt(member: StepperMember): void {
    const at = this.members.indexOf(member);
    if (at < 0) return;
    this.takeBack(member);
    this.members.splice(at, 1);
    member.running = false;
    member.sequence.restart();
    member.pending = [...member.seen];
  }

  /**
   * The member's next token (from `choose`) and the text it adds, and why the member ends with
   * it if it does: the stop rules, in order — no tokens asked for, EOS, a stop string,
   * maxNewTokens, maxContext. With `logprobsOf` (a member asking for logprobs), the chunk carries
   * the token's. A member that ends leaves the stepper.
   */
  private chunkOf(member: StepperMember, choose: () => number, logprobsOf?: (next: number) => LogprobIds): GenerateChunk {
    const o = member.settings;
    if (o.maxNewTokens === 0) {
      this.remove(member);
      return { text: "", tokens: [], finishReason: "length" };
    }
    const next = choose();
    const chunk = this.nextChunk(member, next);
    if (logprobsOf) chunk.logprobs = [describeLogprobs(logprobsOf(next), this.model.optionalTokenizer)];
    if (chunk.finishReason) this.remove(member);
    return chunk;
  }

  private nextChunk(m: StepperMember, next: number): GenerateChunk {
    const o = m.settings;
    m.seen.push(next);
    m.seenIds.add(next);
    m.generated++;
    if (o.stopAtEos && this.model.config.eosTokenIds.includes(next)) return { text: m.stream.flush(), tokens: [next], finishReason: "eos" };
    const { text, stopped } = m.stream.push(next);
    if (stopped) return { text, tokens: [next], finishReason: "stop" };
    // The tokens its sequence holds before a step launched ahead, which already holds `next`.
    const held = m.sequence.length - (this.aheadHolds(m) ? 1 : 0);
    const finishReason: FinishReason | undefined =
      m.generated === o.maxNewTokens ? "length" : held + 1 > o.maxContext ? "context" : undefined;
    return finishReason ? { text: text + m.stream.flush(), tokens: [next], finishReason } : { text, tokens: [next] };
  }
}
