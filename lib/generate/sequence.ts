// A sequence as generation holds it: its caches and, for hybrid generation, the policy that runs
// them, prefilled all or nothing, told of each decode step, and released together.
import type { Decoder, SequenceState } from "../model/decoder";
import type { ResolvedHybrid } from "../hybrid/options";
import { HybridPolicy, HybridState } from "../hybrid/policy";

/**
 * One sequence of a generation with its hybrid policy (none when hybrid mode is off).
 * @example
 * const sequence = new GenerationSequence(model.decoder, resolveHybrid({ mode: "auto" }, model.config.layers));
 * const logits = sequence.prefill(ids, 4096);
 * sequence.release();
 */
export class GenerationSequence {
  private current: { seq: SequenceState; policy?: HybridPolicy };
  private released = false;

  constructor(private readonly decoder: Decoder, private readonly hybrid: ResolvedHybrid) {
    this.current = this.start();
  }

  /** The decoder's sequence (replaced by a fresh one when a first prompt fails). */
  get seq(): SequenceState {
    return this.current.seq;
  }

  /** Tokens held. */
  get length(): number {
    return this.current.seq.length;
  }

  /** The policy's lazy layers and ratios (hybrid generation). */
  get hybridState(): HybridState | undefined {
    return this.current.policy?.state;
  }

  /**
   * Prefills `ids` in chunks of `chunkSize` (default: the decoder's) and returns the logits after the last one, all or
   * nothing: if it fails part-way the decoder puts the caches back and the policy's state is put
   * back here; a first prompt that fails leaves a fresh sequence instead.
   */
  prefill(ids: readonly number[], chunkSize?: number): Float32Array {
    const { seq, policy } = this.current;
    const first = seq.length === 0;
    const saved = first ? undefined : policy?.savePoint();
    try {
      policy?.beforePrefill(seq, ids.length);
      return this.decoder.prefill(seq, ids, { chunkSize, policy });
    } catch (err) {
      if (first) this.restart();
      else saved?.restore();
      throw err;
    } finally {
      saved?.dispose();
    }
  }

  /** After a decode step that appended a token to this sequence: the policy's deferred choice. */
  afterStep(): void {
    this.current.policy?.afterDecode(this.current.seq);
  }

  /** Gives the sequence's KV pages back and frees the policy's state; once is enough. */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.decoder.releaseSequence(this.current.seq);
    this.current.policy?.dispose();
  }

  private start(): { seq: SequenceState; policy?: HybridPolicy } {
    if (this.hybrid.mode === "off") return { seq: this.decoder.createSequence() };
    const policy = new HybridPolicy(this.decoder, this.hybrid);
    return { seq: policy.createSequence(), policy };
  }

  private restart(): void {
    this.decoder.releaseSequence(this.current.seq);
    this.current.policy?.dispose();
    this.current = this.start();
  }
}
