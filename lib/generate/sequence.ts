// A sequence as generation holds it: the decoder's Sequence and, for hybrid generation, the
// policy that is its hooks (kept here for its state). The Sequence prefills all or nothing (its
// caches and its policy's state alike), calls its policy on every step and frees both with
// dispose(); what is left here is the prefill under way, if any, and starting afresh after a
// preemption.

import type { ResolvedHybrid } from "../hybrid/options";
import { HybridPolicy, type HybridState } from "../hybrid/policy";
import type { Decoder } from "../model/decoder";
import type { PrefillRun } from "../model/prefill";
import type { Sequence } from "../model/sequence";

/**
 * One sequence of a generation with its hybrid policy (none when hybrid mode is off).
 * @example
 * const sequence = new GenerationSequence(model.decoder, resolveHybrid({ mode: "auto" }, model.config.layers));
 * const logits = sequence.prefill(ids, 4096);
 * sequence.dispose();
 */
export class GenerationSequence {
  private current: { seq: Sequence; policy?: HybridPolicy };
  private running: PrefillRun | undefined;

  constructor(
    private readonly decoder: Decoder,
    private readonly hybrid: ResolvedHybrid,
  ) {
    this.current = this.start();
  }

  /**
   * The decoder's sequence (replaced by a fresh one when a first prompt fails); an Error if a
   * failed or cancelled prompt could not be put back (Sequence.damaged), until restart().
   */
  get seq(): Sequence {
    const { damaged } = this.current.seq;
    if (damaged) throw new Error(`${damaged.message}; dispose the session and start a new one`, { cause: damaged });
    return this.current.seq;
  }

  /** Tokens held. */
  get length(): number {
    return this.current.seq.length;
  }

  /**
   * A copy of the policy's lazy layers and ratios, taken now; in mode off, no lazy layers and no ratios.
   * @example const { lazyLayers, pending } = sequence.hybridState;
   */
  get hybridState(): HybridState {
    const state = this.current.policy?.state;
    if (!state) {
      const layers = this.decoder.config.layers;
      return {
        mode: "off",
        lazyLayers: [],
        ratios: new Array(layers).fill(undefined),
        headRatios: new Array(layers).fill(undefined),
        pending: false,
      };
    }
    return {
      mode: state.mode,
      lazyLayers: [...state.lazyLayers],
      ratios: [...state.ratios],
      headRatios: state.headRatios.map((h) => h?.slice()),
      pending: state.pending,
    };
  }

  /**
   * While the policy's lazy-layer choice waits for the sequence to grow past sink + window: the
   * length at which generation makes it (after the decode step that reaches it).
   */
  get pendingChoiceAt(): number | undefined {
    return this.current.policy?.choiceLength;
  }

  /**
   * Makes a waiting choice if the sequence has grown past sink + window: after a prompt that took
   * it there (continuePrefill does), or for a teacher-forced prefill stopped at pendingChoiceAt
   * (score), so that it goes on in the layers generation would use.
   */
  chooseIfDue(): void {
    this.current.policy?.chooseIfDue(this.seq);
  }

  /**
   * Prefills `ids` in chunks of `chunkSize` (default: the decoder's) and returns the logits after
   * the last one. All or nothing: the decoder puts the sequence and its policy back if it fails
   * part-way.
   */
  prefill(ids: readonly number[], chunkSize?: number): Float32Array {
    this.startPrefill(ids, chunkSize);
    return this.continuePrefill(Number.POSITIVE_INFINITY).logits!;
  }

  /**
   * Starts the prefill of `ids` that prefill() runs in one call, to go on in continuePrefill
   * calls with other work between them (Decoder.startPrefill).
   * @example sequence.startPrefill(ids); while (!sequence.continuePrefill(4096).logits) decodeOthers();
   */
  startPrefill(ids: readonly number[], chunkSize?: number): void {
    if (this.running) throw new Error("internal: a prefill started while another is under way");
    this.running = this.decoder.startPrefill(this.seq, ids, { chunkSize });
  }

  /** Whether a prefill started with startPrefill is under way. */
  get prefilling(): boolean {
    return this.running !== undefined;
  }

  /**
   * Runs about `work` more of the prefill under way (tokens through one layer each; at least one
   * chunk through one layer) and returns the work done, and the logits after the prompt's last
   * token once it is all in. All or nothing, as prefill().
   */
  continuePrefill(work: number): { work: number; logits?: Float32Array } {
    const run = this.running;
    if (!run) throw new Error("internal: continuePrefill with no prefill under way");
    try {
      const done = run.advance(work);
      if (!run.done) return { work: done };
      this.running = undefined;
      const logits = run.finish();
      // A prompt that takes the sequence past sink + window (a later turn after a short first one)
      // and was too short to measure during its prefill makes the choice that waited at its end,
      // rather than leaving it to a decode step that may never come (a turn of one token).
      this.chooseIfDue();
      return { work: done, logits };
    } catch (err) {
      this.running = undefined;
      throw err;
    }
  }

  /**
   * Ends a prefill under way unfinished: the sequence and its policy are as they were before it
   * began. Does nothing if none is. If putting them back fails, that error is thrown and the
   * sequence refuses every use, saying so, until restart() (which starts it empty) or dispose().
   */
  cancelPrefill(): void {
    const run = this.running;
    this.running = undefined;
    run?.cancel();
  }

  /**
   * Gives every page back and starts again empty, with a fresh policy (a preempted sequence).
   * @example sequence.restart(); sequence.prefill(allTokensSoFar);
   */
  restart(): void {
    this.running = undefined;
    this.current.seq.dispose();
    this.current = this.start();
  }

  /** Gives the sequence's KV pages back and frees its policy; later calls do nothing. */
  dispose(): void {
    this.running = undefined;
    this.current.seq.dispose();
  }

  private start(): { seq: Sequence; policy?: HybridPolicy } {
    if (this.hybrid.mode === "off") return { seq: this.decoder.createSequence() };
    const policy = new HybridPolicy(this.decoder, this.hybrid);
    return { seq: this.decoder.createSequence(policy), policy };
  }
}
