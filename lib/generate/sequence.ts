// A sequence as generation holds it: the decoder's Sequence and, for hybrid generation, the
// policy that is its hooks (kept here for its state). The Sequence prefills all or nothing, calls
// its policy on every step and frees both with dispose(); what is left here is a first prompt's
// failure, after which the policy may have chosen layers for a prompt the sequence no longer
// holds, so generation starts afresh with a new sequence and policy.

import type { ResolvedHybrid } from "../hybrid/options";
import { HybridPolicy, type HybridState } from "../hybrid/policy";
import type { Decoder } from "../model/decoder";
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

  constructor(
    private readonly decoder: Decoder,
    private readonly hybrid: ResolvedHybrid,
  ) {
    this.current = this.start();
  }

  /** The decoder's sequence (replaced by a fresh one when a first prompt fails). */
  get seq(): Sequence {
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
   * Prefills `ids` in chunks of `chunkSize` (default: the decoder's) and returns the logits after
   * the last one; `continues` when more of the prompt follows in a later call (see
   * minFinalPiece). All or nothing: the decoder puts the sequence back if it fails part-way, and a
   * first prompt that fails leaves a fresh sequence and policy here.
   */
  prefill(ids: readonly number[], chunkSize?: number, continues = false): Float32Array {
    const first = this.current.seq.length === 0;
    try {
      return this.decoder.prefill(this.current.seq, ids, { chunkSize, continues });
    } catch (err) {
      if (first) this.restart();
      throw err;
    }
  }

  /**
   * Fewest tokens the last piece of a prompt prefilled in pieces may hold: a hybrid policy
   * measures lazy ratios on the prompt's last queries, which that piece must contain.
   */
  get minFinalPiece(): number {
    return this.current.policy?.minFinalChunk ?? 1;
  }

  /**
   * Gives every page back and starts again empty, with a fresh policy (a preempted sequence, a failed first prompt).
   * @example sequence.restart(); sequence.prefill(allTokensSoFar);
   */
  restart(): void {
    this.current.seq.dispose();
    this.current = this.start();
  }

  /** Gives the sequence's KV pages back and frees its policy; later calls do nothing. */
  dispose(): void {
    this.current.seq.dispose();
  }

  private start(): { seq: Sequence; policy?: HybridPolicy } {
    if (this.hybrid.mode === "off") return { seq: this.decoder.createSequence() };
    const policy = new HybridPolicy(this.decoder, this.hybrid);
    return { seq: this.decoder.createSequence(policy), policy };
  }
}
