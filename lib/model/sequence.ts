// A sequence: its per-layer caches, how many tokens it holds, the hooks that take part in its
// steps (a hybrid policy), and their disposal. The decoder creates sequences and is the only
// one that calls their hooks.

import { FullCache, type LayerCache, StreamingCache } from "../cache/layer-cache";
import type { PagePool } from "../cache/page-pool";
import type { RingShape } from "../common/geometry";
import * as kernels from "../kernels";
import { Tensor } from "../runtime/tensor";

/**
 * How something outside the model (lib/hybrid's policy) takes part in a sequence's steps. The
 * decoder calls these, and nothing else does; every member is optional.
 */
export interface SequenceHooks {
  /** Prefill's final chunk holds at least this many tokens (a lazy ratio needs the last queries). */
  readonly minFinalChunk?: number;
  /** A ring from the start for `layer` instead of a full cache (read once, when the sequence is created). */
  ringAtStart?(layer: number): RingShape | undefined;
  /**
   * A prompt of `tokens` tokens is about to be prefilled into `seq`; `teacherForced` when it
   * stands for decode steps (score's continuation), whose choices are made where decoding makes them.
   */
  beforePrefill?(seq: Sequence, tokens: number, teacherForced: boolean): void;
  /** The lazy-ratio spec to compute for `layer` on prefill's final chunk, or undefined. */
  ratioFor?(seq: Sequence, layer: number): kernels.LazyRatioOptions | undefined;
  /** `layer` has the whole prompt cached; its per-head lazy ratio if ratioFor asked for one. */
  layerDone?(seq: Sequence, layer: number, perHeadRatio: Float32Array | undefined): void;
  /** Whether observeQueries wants to see queries now (a decode step that does runs op by op). */
  observesQueries?(seq: Sequence): boolean;
  /** Layer `layer`'s rotated queries [T, heads, headDim] at absolute position `start`, valid only during the call. */
  observeQueries?(seq: Sequence, layer: number, q: Tensor, start: number): void;
  /** A decode step appended a token to `seq`. */
  afterStep?(seq: Sequence): void;
  /** Saves what a prefill may change in the hooks, so a failed prefill can be undone. */
  savePoint?(): { restore(): void; dispose(): void };
  /** The sequence is disposed. */
  dispose?(): void;
}

/**
 * One sequence over a page pool: a cache per layer, its length and its hooks. Made by
 * Decoder.createSequence; dispose() gives every page back (and may be called more than once).
 * @example
 * const seq = model.decoder.createSequence();
 * const logits = model.decoder.prefill(seq, ids);
 * const next = model.decoder.step([seq], [argmax(logits)], "argmax");
 * seq.dispose();
 */
export class Sequence {
  /** Tokens the sequence holds. */
  length = 0;
  /** @internal A prefill under way (prefill.ts's PrefillRun): until it ends, the sequence is its alone. */
  prefillRun: { abandon(): void } | undefined;
  /** @internal Set when a failed or cancelled prefill could not be put back: the sequence refuses every use but dispose(). */
  damaged: Error | undefined;
  /** @internal Told before a full cache is cut to a ring (a prefill's undo keeps what the cut drops). */
  beforeCut: ((layer: number, cache: FullCache) => void) | undefined;
  private readonly layerCaches: LayerCache[];
  private isDisposed = false;

  /** @internal use Decoder.createSequence */
  constructor(
    private readonly pool: PagePool,
    layers: number,
    slidingWindow: number | null,
    readonly hooks: SequenceHooks = {},
  ) {
    // Mistral's sliding window is a streaming cache without sinks: exact, and bounded.
    this.layerCaches = Array.from({ length: layers }, (_, layer) => {
      if (slidingWindow) return new StreamingCache(pool, 0, slidingWindow);
      const ring = hooks.ringAtStart?.(layer);
      return ring ? new StreamingCache(pool, ring.sink, ring.window) : new FullCache(pool);
    });
  }

  /** Each layer's cache (a layer's cache object changes when it is cut to a ring). */
  get caches(): readonly LayerCache[] {
    return this.layerCaches;
  }

  get disposed(): boolean {
    return this.isDisposed;
  }

  /** Whether a hook wants this sequence's queries now. */
  get observesQueries(): boolean {
    return this.hooks.observesQueries?.(this) ?? false;
  }

  /** Turns layer `layer`'s full cache into a sink + window ring, giving the other pages back; a ring stays as it is. */
  cutToStreaming(layer: number, sink: number, window: number): void {
    const cache = this.layerCaches[layer];
    if (cache.kind !== "full") return;
    this.beforeCut?.(layer, cache);
    this.layerCaches[layer] = cache.cutToStreaming(sink, window);
  }

  /**
   * @internal Puts `cache` back as layer `layer`'s, releasing the one there (a failed prefill's
   * undo, prefill.ts).
   */
  restoreCache(layer: number, cache: LayerCache): void {
    if (this.layerCaches[layer] === cache) return;
    this.layerCaches[layer].release();
    this.layerCaches[layer] = cache;
  }

  /**
   * Per-head lazy ratio of `layer` for queries q [m, heads, headDim] at the sequence's last m
   * positions, against its cache: the fused prefill kernel with every key read through the page
   * table.
   */
  lazyRatio(layer: number, q: Tensor, spec: kernels.LazyRatioOptions): Float32Array {
    const cache = this.layerCaches[layer];
    const { kPages, vPages } = this.pool;
    const ring = cache.kind === "streaming" ? { sink: cache.sink, window: cache.window } : undefined;
    const made: Tensor[] = [];
    try {
      const pageTable = Tensor.from(Int32Array.from(cache.pageTable), [cache.pageTable.length], { device: kPages.device });
      made.push(pageTable);
      const res = kernels.prefillAttention({
        q,
        streaming: ring,
        lazyRatio: spec,
        cached: { kPages, vPages, pageTable, length: this.length, ring },
      });
      made.push(res.out, res.lazyRatio!);
      return res.lazyRatio!.toFloat32Array();
    } finally {
      for (const t of made) t.dispose();
    }
  }

  /** Gives every page back to the pool and disposes the hooks; later calls do nothing. */
  dispose(): void {
    if (this.isDisposed) return;
    this.isDisposed = true;
    try {
      this.prefillRun?.abandon();
    } finally {
      for (const c of this.layerCaches) c.release();
      this.hooks.dispose?.();
    }
  }
}
