// A decode step's undo, and a greedy step launched without waiting for it (Decoder.launchGreedy):
// its tokens come back when asked for, and its token can be taken back out of any of its
// sequences (one that stopped on the step before, a request cancelled) while no later step
// or prefill has run over them.
import { PendingRead } from "../runtime/tensor";
import type { DecodeStats } from "./decode-graph";
import type { StepBuffers } from "./decode-step";
import type { Sequence } from "./sequence";

/**
 * Each cache's length and page count, in sequence and layer order: what rollBackStep puts back.
 * @example const marks = markCaches(seqs); // before the step reserves its slots
 */
export function markCaches(seqs: readonly Sequence[]): Int32Array {
  const marks = new Int32Array(2 * seqs.length * (seqs[0]?.caches.length ?? 0));
  let at = 0;
  for (const s of seqs)
    for (const cache of s.caches) {
      marks[at++] = cache.length;
      marks[at++] = cache.pageTable.length;
    }
  return marks;
}

/**
 * Undoes a step that reserved its slots (one that failed: a launch refused, a kernel's workspace
 * or a hook's copy of the queries out of memory; or one launched ahead and not wanted): every
 * cache back to its length and pages, a page the step took back in the pool. Nothing else needs
 * putting back. A full cache's slot past its length is unused. A ring's slot that the step may
 * have written held the position `window` tokens back, which the sequence's next token
 * overwrites again before anything reads the ring (a step appends before it attends, and a
 * prefill's first query reaches back only window - 1 positions), so no later computation sees
 * the difference. A page given back while the step still runs is reused only by work queued
 * after it on the same stream.
 * @example rollBackStep(seqs, marks);
 */
export function rollBackStep(seqs: readonly Sequence[], marks: Int32Array): void {
  seqs.forEach((s, b) => rollBackSequence(s, b, marks));
}

/** rollBackStep for sequence b of the batch alone. */
function rollBackSequence(seq: Sequence, b: number, marks: Int32Array): void {
  let at = 2 * b * seq.caches.length;
  for (const cache of seq.caches) {
    cache.rollBack(marks[at], marks[at + 1]);
    at += 2;
  }
}

/** What a launched step needs to take its token back out of its sequences. */
export interface StepUndo {
  seqs: readonly Sequence[];
  /** Each sequence's length before the step. */
  lengths: readonly number[];
  /** markCaches before the step. */
  marks: Int32Array;
}

/**
 * A greedy decode step launched by Decoder.launchGreedy: its sequences hold its token from the
 * launch; tokens() gives the token each one's logits chose once they are back, and undo() takes
 * the step's token back out of some or all of them.
 * @example
 * const launched = decoder.launchGreedy(seqs, ids);
 * const tokens = launched.tokens();
 * if (stopped) launched.undo([seqs[0]]);
 */
export class LaunchedStep {
  private chosen: Int32Array | undefined;
  private hooksCalled = false;
  /** What an afterStep hook threw, thrown again by every later tokens() call. */
  private hookFailure: { error: unknown } | undefined;
  private readonly undone = new Set<Sequence>();

  /** @internal use Decoder.launchGreedy */
  constructor(
    private readonly step: StepUndo,
    private readonly counts: DecodeStats,
    /** @internal The recording it replayed, whose tokens a chained step takes; undefined when it ran op by op. */
    readonly replayed: StepBuffers | undefined,
    private pending: PendingRead | Int32Array,
  ) {}

  /** The sequences it ran, in batch order. */
  get seqs(): readonly Sequence[] {
    return this.step.seqs;
  }

  /**
   * Each sequence's most likely next token [batch] (lowest id on ties), waiting for them if they
   * are not back yet; the first call also calls the sequences' afterStep hooks, stopping at the
   * first that throws (as Decoder.step does), and every later call throws that error again.
   * Every call returns the same array.
   * @example const [next] = launched.tokens();
   */
  tokens(): Int32Array {
    if (!this.chosen) {
      const t0 = performance.now();
      this.chosen = (this.pending instanceof PendingRead ? this.pending.wait() : this.pending) as Int32Array;
      if (this.replayed) this.counts.readbackMs += performance.now() - t0;
    }
    if (!this.hooksCalled) {
      this.hooksCalled = true;
      try {
        for (const s of this.step.seqs) if (!this.undone.has(s) && !s.disposed) s.hooks.afterStep?.(s);
      } catch (error) {
        this.hookFailure = { error };
      }
    }
    if (this.hookFailure) throw this.hookFailure.error;
    return this.chosen;
  }

  /**
   * Takes the step's token back out of `which` (default: every sequence it ran), as if the step
   * had never run for them: lengths, pages, caches (rollBackStep). For each, it must be the last
   * step or prefill to have run over it; a disposed sequence, or one already taken out, is
   * skipped. The step still runs on the device; only its effect on these sequences goes.
   * @example launched.undo([finished.seq]);
   */
  undo(which: readonly Sequence[] = this.step.seqs): void {
    const { seqs, lengths, marks } = this.step;
    for (const s of which) {
      const b = seqs.indexOf(s);
      if (b < 0) throw new RangeError("undo: this step did not run that sequence");
      if (this.undone.has(s) || s.disposed) continue;
      if (s.length !== lengths[b] + 1)
        throw new Error(
          `undo: the sequence holds ${s.length} tokens, not the ${lengths[b] + 1} this step left; a later step or prefill ran over it`,
        );
      rollBackSequence(s, b, marks);
      s.length -= 1;
      this.undone.add(s);
    }
  }

  /**
   * @internal Checks that a step over `seqs` may take this one's tokens: the same sequences in
   * the same order, each still holding this step's token as its last.
   */
  checkFollowedBy(seqs: readonly Sequence[]): void {
    const { seqs: own, lengths } = this.step;
    if (!Array.isArray(seqs) || seqs.length !== own.length || seqs.some((s, b) => s !== own[b]))
      throw new RangeError("decode: a launched step's tokens go only to a step over the same sequences, in the same order");
    seqs.forEach((s, b) => {
      if (this.undone.has(s) || s.length !== lengths[b] + 1)
        throw new RangeError("decode: a launched step's tokens go only to the next step over its sequences, and not after undo()");
    });
  }
}
