// The hybrid policy of one sequence (DESIGN.md section 2): which layers' caches become
// streaming rings, and when.
//
// auto: during prefill each layer's lazy ratio comes from the fused prefill kernel on the final
// chunk; a bounded heap (selection.ts) picks the lazy layers and each one's cache is cut to the
// ring the moment it is picked, so at most P + 1 full caches exist at once.
// Short prompts (N <= sink + window): every ratio would be 1 and there is nothing to cut, so the
// choice waits until the sequence first grows past sink + window. Until then the last
// `lastQueries` rotated queries of every layer are kept; at the decode step that gets there each
// layer's ratio is computed from them against its cache, exactly as prefill would have, and the
// lazy layers are cut. Long generations from short prompts become hybrid too. A later prompt
// that gets there (a session's second turn) measures during its prefill, as a first prompt
// does, when it holds the last queries itself; a shorter one, or score's teacher-forced
// continuation, makes the choice at its end.
// fixed / random / streaming-all: the lazy set is known; with prefill "full" those layers are
// cut as soon as their prefill is done, with prefill "streaming" they are rings from the start.

import { type RingShape, ringSize } from "../common/geometry";
import type { Decoder } from "../model/decoder";
import type { Sequence, SequenceHooks } from "../model/sequence";
import { Tensor } from "../runtime/tensor";
import type { ResolvedHybrid } from "./options";
import { LazyLayerSelector } from "./selection";

/** What a sequence reports about its hybrid state (session.stats). */
export interface HybridState {
  mode: ResolvedHybrid["mode"];
  /** Layers whose caches are streaming rings now. */
  lazyLayers: number[];
  /** Each layer's lazy ratio (mean over heads), where measured. */
  ratios: Array<number | undefined>;
  /** Per-head ratios, where measured. */
  headRatios: Array<Float32Array | undefined>;
  /** Auto mode is waiting for the sequence to grow past sink + window. */
  pending: boolean;
}

/**
 * The hybrid policy of one sequence: the hooks its decoder calls.
 * @example
 * const policy = new HybridPolicy(model.decoder, resolveHybrid({ mode: "auto", fullLayers: 0.5 }, model.config.layers));
 * const seq = model.decoder.createSequence(policy);
 * model.decoder.prefill(seq, ids);
 * console.log(policy.state.lazyLayers);
 * seq.dispose();
 */
export class HybridPolicy implements SequenceHooks {
  readonly state: HybridState;
  readonly minFinalChunk: number;
  private readonly selector: LazyLayerSelector;
  private readonly lazy = new Set<number>();
  private readonly ringsAtStart: Set<number>;
  private kept: KeptQueries | undefined;
  /** The prefill under way measures each layer on its final chunk (and cuts as it chooses). */
  private measuringPrefill = false;

  constructor(
    private readonly decoder: Decoder,
    readonly options: ResolvedHybrid,
  ) {
    const layers = decoder.config.layers;
    if (options.mode !== "off" && decoder.config.slidingWindow !== null)
      throw new Error(
        `hybrid mode '${options.mode}' needs full-attention layers to cut, but this model uses a sliding window ` +
          `(sliding_window ${decoder.config.slidingWindow}): its layers are already bounded; use mode 'off'`,
      );
    this.selector = new LazyLayerSelector(options.fullLayers);
    // The kernel measures a layer over the last chunk's queries; modes that do not measure need no such chunk.
    this.minFinalChunk = options.mode === "auto" || options.mode === "calibrate" ? options.lastQueries : 1;
    this.state = {
      mode: options.mode,
      lazyLayers: [],
      ratios: new Array(layers).fill(undefined),
      headRatios: new Array(layers).fill(undefined),
      pending: false,
    };
    this.ringsAtStart = new Set(options.prefill === "streaming" ? (options.lazyLayers ?? []) : []);
    for (const i of this.ringsAtStart) this.markLazy(i);
  }

  private get measures(): boolean {
    return this.options.mode === "auto" || this.options.mode === "calibrate";
  }

  ringAtStart(layer: number): RingShape | undefined {
    return this.ringsAtStart.has(layer) ? { sink: this.options.sink, window: this.options.window } : undefined;
  }

  beforePrefill(seq: Sequence, tokens: number, teacherForced: boolean): void {
    this.measuringPrefill = false;
    const decided = this.state.ratios.some((r) => r !== undefined);
    if (!this.measures || decided) return;
    if (seq.length + tokens <= ringSize(this.options)) {
      this.state.pending = true;
      this.kept ??= new KeptQueries(this.decoder.config.layers, this.options.lastQueries);
    } else if (seq.length === 0 || (this.state.pending && !teacherForced && tokens >= this.options.lastQueries)) {
      // A first prompt, or one that takes a waiting sequence past sink + window holding the last
      // queries itself: measured layer by layer as it goes, so that at most P + 1 caches are
      // full at once (the undo keeps what a cut drops from the turns before it).
      this.measuringPrefill = true;
      this.state.pending = false;
    }
  }

  observesQueries(): boolean {
    return this.kept !== undefined && this.state.pending;
  }

  observeQueries(_seq: Sequence, layer: number, q: Tensor, start: number): void {
    this.kept?.observe(layer, q, start);
  }

  ratioFor(_seq: Sequence, _layer: number) {
    // Only the prefill that takes a sequence past sink + window measures (and so cuts), once per
    // layer. A layer a later prefill would find unmeasured is one whose choice failed part-way in
    // afterStep; it stays full.
    if (!this.measuringPrefill) return undefined;
    return { sink: this.options.sink, window: this.options.window, lastQueries: this.options.lastQueries };
  }

  layerDone(seq: Sequence, layer: number, perHeadRatio: Float32Array | undefined): void {
    if (perHeadRatio) this.record(seq, layer, perHeadRatio);
    else if (!this.measures && this.options.lazyLayers?.includes(layer)) this.cut(seq, layer);
    // The queries a waiting choice kept are not needed once a prefill has measured every layer.
    if (this.measuringPrefill && layer === this.decoder.config.layers - 1) {
      this.measuringPrefill = false;
      this.kept?.dispose();
      this.kept = undefined;
    }
  }

  /**
   * The length at which a deferred choice is made, while one waits: by the decode step that
   * reaches it, or at the end of a prompt that gets there too short to measure.
   */
  get choiceLength(): number | undefined {
    return this.state.pending ? ringSize(this.options) + 1 : undefined;
  }

  afterStep(seq: Sequence): void {
    this.chooseIfDue(seq);
  }

  /**
   * Makes the deferred choice once the sequence has grown past sink + window: after the decode
   * step that gets there, after a teacher-forced prefill that stopped there (score), or after a
   * prompt that got there with fewer than lastQueries tokens (GenerationSequence.continuePrefill).
   */
  chooseIfDue(seq: Sequence): void {
    if (!this.state.pending || seq.length <= ringSize(this.options)) return;
    const spec = { sink: this.options.sink, window: this.options.window, lastQueries: this.options.lastQueries };
    const ratios: Float32Array[] = [];
    for (let layer = 0; layer < this.decoder.config.layers; layer++) {
      const q = this.kept!.ordered(layer, seq.length);
      try {
        ratios.push(seq.lazyRatio(layer, q, spec));
      } finally {
        q.dispose();
      }
    }
    // Refused before anything changes, so that the choice stays pending (the selection refuses a
    // NaN ratio too, but only once earlier layers are recorded and cut).
    const nan = ratios.findIndex((r) => r.some(Number.isNaN));
    if (nan >= 0) throw new RangeError(`lazy ratio of layer ${nan} is NaN: the model's attention at this step is not finite`);
    this.state.pending = false;
    this.kept?.dispose();
    this.kept = undefined;
    ratios.forEach((r, layer) => this.record(seq, layer, r));
  }

  /**
   * Saves what a prefill may change in this policy (the ratios measured, the layers chosen, the
   * selection under way, the kept queries of a pending choice), so that a prefill that fails or
   * is cancelled can be undone; the caches are the decoder's to restore.
   */
  savePoint(): { restore(): void; dispose(): void } {
    const keptObject = this.kept;
    const kept = keptObject?.save();
    const state = {
      lazyLayers: [...this.state.lazyLayers],
      ratios: [...this.state.ratios],
      headRatios: this.state.headRatios.map((h) => h?.slice()),
      pending: this.state.pending,
    };
    const lazy = [...this.lazy];
    const heap = this.selector.save();
    return {
      restore: () => {
        this.measuringPrefill = false;
        Object.assign(this.state, state);
        this.lazy.clear();
        for (const layer of lazy) this.lazy.add(layer);
        this.selector.restore(heap);
        // Queries kept for a choice that the undone prefill started go; those it let go (a
        // prefill that measured) come back.
        if (this.kept !== keptObject) this.kept?.dispose();
        this.kept = keptObject;
        kept?.restore();
      },
      dispose: () => kept?.dispose(),
    };
  }

  dispose(): void {
    this.kept?.dispose();
    this.kept = undefined;
  }

  private record(seq: Sequence, layer: number, perHead: Float32Array): void {
    const ratio = perHead.reduce((a, b) => a + b, 0) / perHead.length;
    this.state.ratios[layer] = ratio;
    this.state.headRatios[layer] = perHead;
    const lazy = this.selector.push(layer, ratio);
    if (lazy !== undefined) this.cut(seq, lazy);
  }

  private cut(seq: Sequence, layer: number): void {
    seq.cutToStreaming(layer, this.options.sink, this.options.window);
    this.markLazy(layer);
  }

  private markLazy(layer: number): void {
    this.lazy.add(layer);
    this.state.lazyLayers = [...this.lazy].sort((a, b) => a - b);
  }
}

/** The last `count` rotated queries of every layer, in a ring per layer. */
class KeptQueries {
  private readonly rings: Array<Tensor | undefined>;
  private readonly positions: number[][];

  constructor(
    layers: number,
    private readonly count: number,
  ) {
    this.rings = new Array(layers).fill(undefined);
    this.positions = Array.from({ length: layers }, () => []);
  }

  observe(layer: number, q: Tensor, start: number): void {
    const T = q.shape[0];
    // Rows for as many queries as have come (positions from 0), at most `count`: a short prompt
    // holds its own queries only, however many lastQueries asks for.
    const needed = Math.min(this.count, start + T);
    const held = this.rings[layer]?.shape[0] ?? 0;
    if (held < needed) this.grow(layer, q, Math.min(this.count, Math.max(needed, 2 * held)));
    const ring = this.rings[layer]!;
    const rows = ring.shape[0];
    for (let t = Math.max(0, T - rows); t < T; t++) {
      const pos = start + t;
      const row = q.rows(t, 1),
        slot = ring.rows(pos % rows, 1);
      slot.copyFrom(row);
      row.dispose();
      slot.dispose();
      this.positions[layer][pos % rows] = pos;
    }
  }

  /** Gives the layer a ring of `rows` rows holding what its smaller one held (positions stay distinct: fewer came than it held). */
  private grow(layer: number, q: Tensor, rows: number): void {
    const ring = Tensor.empty([rows, q.shape[1], q.shape[2]], q.dtype, q.device);
    const old = this.rings[layer];
    const positions: number[] = [];
    try {
      this.positions[layer].forEach((pos, at) => {
        const src = old!.rows(at, 1),
          dst = ring.rows(pos % rows, 1);
        dst.copyFrom(src);
        src.dispose();
        dst.dispose();
        positions[pos % rows] = pos;
      });
    } catch (err) {
      ring.dispose();
      throw err;
    }
    old?.dispose();
    this.rings[layer] = ring;
    this.positions[layer] = positions;
  }

  /** The last min(count, length) queries in position order [m, hq, d] (caller disposes). */
  ordered(layer: number, length: number): Tensor {
    const ring = this.rings[layer]!;
    const rows = ring.shape[0];
    const m = Math.min(this.count, length);
    for (let pos = length - m; pos < length; pos++)
      if (this.positions[layer][pos % rows] !== pos) throw new Error(`internal: query at position ${pos} of layer ${layer} was not kept`);
    const out = Tensor.empty([m, ring.shape[1], ring.shape[2]], ring.dtype, ring.device);
    for (let i = 0; i < m; i++) {
      const pos = length - m + i;
      const dst = out.rows(i, 1),
        src = ring.rows(pos % rows, 1);
      dst.copyFrom(src);
      dst.dispose();
      src.dispose();
    }
    return out;
  }

  /** A copy of the kept queries, to put back with restore() if a prefill fails. */
  save(): { restore(): void; dispose(): void } {
    const rings: Array<Tensor | undefined> = [];
    try {
      for (const r of this.rings) {
        if (!r) {
          rings.push(undefined);
          continue;
        }
        const copy = Tensor.empty(r.shape, r.dtype, r.device);
        rings.push(copy);
        copy.copyFrom(r);
      }
    } catch (err) {
      for (const r of rings) r?.dispose();
      throw err;
    }
    const positions = this.positions.map((p) => [...p]);
    const dispose = () => rings.forEach((r) => r?.dispose());
    return {
      restore: () => {
        this.rings.forEach((r, layer) => {
          const saved = rings[layer];
          if (saved && r?.shape[0] === saved.shape[0]) r.copyFrom(saved);
          else if (saved) {
            // The ring grew since: back to one of the saved size.
            const ring = Tensor.empty(saved.shape, saved.dtype, saved.device);
            ring.copyFrom(saved);
            r?.dispose();
            this.rings[layer] = ring;
          } else if (r) {
            r.dispose();
            this.rings[layer] = undefined;
          }
        });
        positions.forEach((p, layer) => (this.positions[layer] = p));
      },
      dispose,
    };
  }

  dispose(): void {
    for (const r of this.rings) r?.dispose();
    this.rings.fill(undefined);
  }
}
