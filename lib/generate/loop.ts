// The generation loop, for one sequence or many: every prompt prefilled, then one decode step at
// a time for all the sequences still going, each choosing its next token, until a stop rule ends
// it (stepper.ts). Session.generate runs it for one sequence, generateBatch for many; an
// AbortSignal, or the sequences' owner disposed, ends it between steps and between a prompt's
// prefill units (a chunk through one layer).
import type { GenerateChunk, GenerateSettings } from "./options";
import type { GenerationSequence } from "./sequence";
import { type GenerationCounters, type GenerationModel, GenerationStepper, type LaunchAhead, type StepperMember } from "./stepper";

export type { GenerationCounters, GenerationModel } from "./stepper";

export interface LoopOptions extends GenerateSettings {
  maxContext: number;
  prefillChunk: number;
  /** Who owns the sequences, and whether it is still there: checked after every wait. */
  owner: { name: "session" | "model"; isLive(): boolean };
  /** The loop releases each sequence when it finishes (or the loop fails); a session keeps its own. */
  releaseSequences: boolean;
  counters?: GenerationCounters;
  /** When decode steps are launched ahead (the stepper's default: "replayed"). */
  launchAhead?: LaunchAhead;
}

/** A prompt to append to a sequence and continue. */
export interface LoopPrompt {
  sequence: GenerationSequence;
  ids: readonly number[];
  /** The tokens the sequence holds already (a session's earlier turns), in order; default none. */
  history?: readonly number[];
}

/** A chunk of prompt `index`'s continuation. */
export interface LoopChunk {
  index: number;
  chunk: GenerateChunk;
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * The error a generation (or scoring) ends with when the owner of its sequences is disposed under it.
 * @example if (!owner.isLive()) throw disposedDuring("model", "scoring");
 */
export function disposedDuring(owner: "session" | "model", work: "generation" | "scoring" = "generation"): Error {
  const err = new Error(`this ${owner} was disposed during ${work}: the ${work} stopped and its KV pages were released`);
  err.name = "AbortError";
  return err;
}

/**
 * What `work` (prompts being encoded, say) gives, or, when the owner was disposed before it
 * settled, disposedDuring's AbortError in place of its result or its error (a disposed model's
 * tokenizer fails what it was encoding). An abort of `signal` rejects at once with its reason;
 * the work itself runs on and its outcome is dropped.
 * @example const ids = await whileLive(owner, promptIdsAsync(tokenizer, prompt, vocabSize, "prompt"), "generation", signal);
 */
export async function whileLive<T>(
  owner: { name: "session" | "model"; isLive: () => boolean },
  work: Promise<T>,
  what: "generation" | "scoring" = "generation",
  signal?: AbortSignal,
): Promise<T> {
  let result: T;
  try {
    result = await (signal ? untilAborted(work, signal) : work);
  } catch (err) {
    if (!owner.isLive()) throw disposedDuring(owner.name, what);
    throw err;
  }
  if (!owner.isLive()) throw disposedDuring(owner.name, what);
  return result;
}

/** `work`'s outcome, or the signal's reason as soon as it aborts. */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) reject(signal.reason);
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    // After an abort the settled promise ignores the work's outcome, a rejection included.
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/**
 * Generates for every prompt, yielding each sequence's chunks in order: one per token, the last
 * with its finishReason. Prompt i's sampler is seeded with sampling.seed + i (modulo 2^32). With
 * `releaseSequences` the sequences are released as they finish, and all of them when the loop
 * fails or is left; otherwise they stay with their owner, each holding its prompt and what it
 * generated.
 * @example
 * for await (const { index, chunk } of generationLoop(model, [{ sequence, ids }], options)) process.stdout.write(chunk.text);
 */
export async function* generationLoop(model: GenerationModel, prompts: readonly LoopPrompt[], o: LoopOptions): AsyncGenerator<LoopChunk> {
  const checkLive = () => {
    if (!o.owner.isLive()) throw disposedDuring(o.owner.name);
  };
  const stepper = new GenerationStepper(model, { releaseSequences: o.releaseSequences, counters: o.counters, launchAhead: o.launchAhead });
  const indexOf = new Map<StepperMember, number>();
  try {
    const first: LoopChunk[] = [];
    for (const [index, { sequence, ids, history }] of prompts.entries()) {
      o.signal?.throwIfAborted();
      // A sampler uses its seed's low 32 bits: taking them first keeps seed + index safe at any seed.
      const seed = o.sampling.seed === undefined ? undefined : ((o.sampling.seed >>> 0) + index) >>> 0;
      const member = stepper.admit(sequence, ids, { ...o, sampling: { ...o.sampling, seed } }, history);
      indexOf.set(member, index);
      // A long prompt goes in a chunk through one layer at a time (work 1: the finest step a
      // prefill takes), with the event loop and the signal looked at in between; an abort puts
      // the sequence back as it was before the prompt, and rejects with the abort's reason even
      // if putting it back fails.
      let done = stepper.prefill(member, 1);
      for (; !done.chunk; done = stepper.prefill(member, 1)) {
        await yieldToEventLoop();
        checkLive();
        if (o.signal?.aborted) {
          try {
            stepper.remove(member);
          } finally {
            o.signal.throwIfAborted();
          }
        }
      }
      first.push({ index, chunk: done.chunk });
      // A prompt that is in has its first token. A sequence the loop keeps (a session's) must hold
      // what its chunks gave, so its chunk is given before an abort is looked at again (at the
      // first decode step); sequences the loop releases end with the abort here.
      await yieldToEventLoop();
      checkLive();
      if (o.releaseSequences) o.signal?.throwIfAborted();
    }
    yield* first;
    while (stepper.decoding.length) {
      await yieldToEventLoop();
      checkLive();
      o.signal?.throwIfAborted();
      for (const { member, chunk } of stepper.step()) yield { index: indexOf.get(member)!, chunk };
    }
  } finally {
    try {
      // A step launched ahead holds a token no chunk gave: it comes back out of kept sequences.
      stepper.settle();
    } finally {
      if (o.releaseSequences) for (const { sequence } of prompts) sequence.dispose();
    }
  }
}
