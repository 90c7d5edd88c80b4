// Prefill: prompt tokens through the layer (layer.ts) in chunks, layer-major, all or nothing.
// A chunk's rotated keys and values are staged, not written to the cache: attendPrefillChunk
// needs them beside the cached prefix and appends them itself, after reading any ring slots
// they would overwrite.

import type { FullCache, LayerCache } from "../cache/layer-cache";
import * as kernels from "../kernels";
import { Tensor } from "../runtime/tensor";
import { type LayerAttention, LayerScratch, type ModelParts, runHead, runLayer } from "./layer";
import { attendPrefillChunk, ints } from "./prefill-attention";
import type { Sequence } from "./sequence";

/**
 * [offset, length] of each chunk: at most `size` tokens, the last one at least `minFinal` (when N allows).
 * @example planChunks(10, 4, 3) // [[0, 4], [4, 6]]
 */
export function planChunks(N: number, size: number, minFinal: number): Array<[number, number]> {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`chunkSize must be an integer >= 1, got ${size}`);
  const chunks: Array<[number, number]> = [];
  for (let offset = 0; offset < N; offset += size) chunks.push([offset, Math.min(size, N - offset)]);
  // A short final chunk is merged into its predecessor, so it can hold all the last queries.
  while (chunks.length > 1 && chunks[chunks.length - 1][1] < Math.min(minFinal, N)) {
    const [, len] = chunks.pop()!;
    chunks[chunks.length - 1][1] += len;
  }
  return chunks;
}

/** Tensors (and scratch) of one piece of work, disposed together. */
class Temps {
  private readonly list: Array<{ dispose(): void }> = [];
  add = <T extends { dispose(): void }>(t: T): T => {
    this.list.push(t);
    return t;
  };
  dispose(): void {
    for (const t of this.list) t.dispose();
    this.list.length = 0;
  }
}

/**
 * What a prefill returns: the logits after the last token ("last"), after every token ("all"), or
 * the log-probability of targets[i] after token i, for i < targets.length.
 */
export type PrefillOutput = "last" | "all" | { targets: readonly number[] };

/** Rows of logits the head makes at a time when scoring targets: 1024 rows of a 128K vocabulary in bf16 are 256 MiB. */
const scoreBlockRows = 1024;

/**
 * Runs prompt `ids` (checked by the caller) through the model into `seq`'s caches and returns
 * what `output` asks for (PrefillOutput): a PrefillRun run to its end in one call.
 * @example const logits = prefillSequence(parts, seq, ids, 4096, "last");
 */
export function prefillSequence(
  parts: ModelParts,
  seq: Sequence,
  ids: readonly number[],
  chunkSize: number,
  output: PrefillOutput,
): Float32Array {
  const run = new PrefillRun(parts, seq, ids, chunkSize, output);
  run.advance(Number.POSITIVE_INFINITY);
  return run.finish();
}

/**
 * A prefill that can stop between units of work and go on later, so that a server can run decode
 * steps for other sequences between them. A unit is one chunk through one layer; the units run
 * layer-major — every chunk through layer i, then layer i + 1 — so the hooks learn layer i's
 * lazy ratio (and may cut its cache) before layer i + 1 allocates anything, however the run is
 * split, and the result is the one an unsplit run gives, bit for bit. The run holds the prompt's
 * residual stream [tokens, hidden] between calls. All or nothing: if a unit or the head fails,
 * or the run is cancelled, the sequence (caches, length, hooks) is put back as it was before the
 * run began. The sequence is the run's until finish() or cancel().
 * @example
 * const run = new PrefillRun(parts, seq, ids, 4096, "last");
 * while (!run.done) run.advance(512 * parts.config.layers); // and decode other sequences between
 * const logits = run.finish();
 */
export class PrefillRun {
  private readonly temps = new Temps();
  private readonly undo: PrefillUndo;
  private readonly chunks: Array<[number, number]>;
  private readonly h: Tensor;
  private readonly positions: Tensor;
  private layer = 0;
  private chunk = 0;
  private ratio: Float32Array | undefined;
  private ended = false;

  constructor(
    private readonly parts: ModelParts,
    private readonly seq: Sequence,
    private readonly ids: readonly number[],
    chunkSize: number,
    private readonly output: PrefillOutput,
  ) {
    const { device, dtype } = parts;
    const N = ids.length;
    this.chunks = planChunks(N, chunkSize, seq.hooks.minFinalChunk ?? 1);
    this.undo = new PrefillUndo(parts, seq, N);
    try {
      seq.hooks.beforePrefill?.(seq, N, typeof output === "object");
      const start = seq.length;
      this.positions = this.temps.add(
        ints(
          Array.from(ids, (_, i) => start + i),
          device,
        ),
      );
      this.h = this.temps.add(kernels.embedding({ ids: this.temps.add(ints(ids, device)), table: parts.weights.embed, dtype }));
    } catch (err) {
      this.fail(err);
    }
    seq.prefillRun = this;
  }

  /** Whether every layer has run: finish() gives the result. */
  get done(): boolean {
    return this.layer === this.parts.config.layers;
  }

  /**
   * Runs units until `work` (tokens through one layer each) is spent, at least one unit, and at
   * most to the last layer. Returns the work done. If a unit fails, the run is over and the
   * sequence as it was before the run began.
   */
  advance(work: number): number {
    this.checkOpen("advance");
    const N = this.ids.length;
    let spent = 0;
    try {
      while (!this.done && (spent === 0 || spent < work)) {
        const [offset, T] = this.chunks[this.chunk];
        const final = offset + T === N;
        this.ratio = runChunk(this.parts, this.seq, this.layer, this.h, this.positions, offset, T, final) ?? this.ratio;
        spent += T;
        if (++this.chunk === this.chunks.length) {
          this.seq.hooks.layerDone?.(this.seq, this.layer, this.ratio);
          this.ratio = undefined;
          this.chunk = 0;
          this.layer++;
        }
      }
    } catch (err) {
      this.fail(err);
    }
    return spent;
  }

  /** The prefill's result, once done; the run ends and the sequence holds the prompt. */
  finish(): Float32Array {
    this.checkOpen("finish");
    if (!this.done) throw new Error("internal: a prefill run finished before its last layer");
    try {
      this.seq.length += this.ids.length;
      const result = this.head();
      this.end(false);
      return result;
    } catch (err) {
      this.fail(err);
    }
  }

  private head(): Float32Array {
    const { config: c, device, dtype } = this.parts;
    const N = this.ids.length;
    const output = this.output;
    if (typeof output === "object") return scoreTargets(this.parts, this.h, output.targets, this.temps);
    // Usually only the last position's logits are needed.
    const rows = output === "all" ? N : 1;
    const logits = this.temps.add(Tensor.empty([rows, c.vocabSize], dtype, device));
    runHead(this.parts, this.temps.add(this.h.rows(N - rows, rows)), logits);
    return logits.toFloat32Array();
  }

  /**
   * Ends the run unfinished: the sequence goes back to what it was before the run began. If that
   * fails, its error is thrown and the sequence refuses every use (Sequence.damaged).
   */
  cancel(): void {
    if (!this.ended) this.putBack((undo) => `the context could not be put back as it was before its prompt was cancelled (${undo})`);
  }

  /** @internal Ends the run unfinished without putting anything back: its sequence is being disposed. */
  abandon(): void {
    if (!this.ended) this.end(false);
  }

  /**
   * Ends the run after `err` and puts the sequence back, then throws `err`; if putting it back
   * fails, the sequence says both why it refuses use (Sequence.damaged).
   */
  private fail(err: unknown): never {
    try {
      this.putBack(
        (undo) => `a prompt failed (${(err as Error).message}) and the context could not be put back as it was before it (${undo})`,
      );
    } catch {
      // The caller gets the prompt's own error; the sequence holds the undo's.
    }
    throw err;
  }

  /**
   * Ends the run and puts the sequence back. If that fails, the sequence is not as it was: it
   * refuses every use from then on, with the message `why` makes of the undo's, until disposed,
   * and the undo's error is thrown.
   */
  private putBack(why: (undo: string) => string): void {
    try {
      this.end(true);
    } catch (undoErr) {
      this.seq.damaged = new Error(why((undoErr as Error).message), { cause: undoErr });
      throw undoErr;
    }
  }

  private end(restore: boolean): void {
    this.ended = true;
    if (this.seq.prefillRun === this) this.seq.prefillRun = undefined;
    try {
      if (restore) this.undo.restore();
    } finally {
      this.undo.dispose();
      this.temps.dispose();
    }
  }

  private checkOpen(what: string): void {
    if (this.ended) throw new Error(`internal: ${what} on a prefill run that has ended`);
  }
}

/**
 * The log-probability of targets[i] after row i of the prompt's final residual stream h, through
 * the head a block of rows at a time, so that only [block, vocab] logits exist at once and only
 * one number per row is read back. `temps` owns what is made here.
 */
function scoreTargets(parts: ModelParts, h: Tensor, targets: readonly number[], temps: Temps): Float32Array {
  const { config: c, device, dtype } = parts;
  const M = targets.length;
  if (M === 0) return new Float32Array(0);
  const block = Math.min(M, scoreBlockRows);
  const logits = temps.add(Tensor.empty([block, c.vocabSize], dtype, device));
  const targetIds = temps.add(ints(targets, device));
  const out = temps.add(Tensor.empty([M], "f32", device));
  for (let start = 0; start < M; start += block) {
    const R = Math.min(block, M - start);
    const rows = (t: Tensor, from: number) => temps.add(t.rows(from, R));
    const blockLogits = rows(logits, 0);
    runHead(parts, rows(h, start), blockLogits);
    kernels.tokenLogprobs({ logits: blockLogits, targets: rows(targetIds, start), out: rows(out, start) });
  }
  return out.toFloat32Array();
}

/**
 * Layer `layer` over rows [offset, offset + T) of the prompt's residual stream h; returns the
 * per-head lazy ratio if this is the final chunk and the hooks ask for one.
 */
function runChunk(
  parts: ModelParts,
  seq: Sequence,
  layer: number,
  h: Tensor,
  positions: Tensor,
  offset: number,
  T: number,
  final: boolean,
): Float32Array | undefined {
  const { config: c, device, dtype, pool } = parts;
  const temps = new Temps();
  try {
    const scratch = temps.add(new LayerScratch(parts, T));
    const stage = [1, T, c.kvHeads, c.headDim];
    const kStage = temps.add(Tensor.empty(stage, dtype, device)),
      vStage = temps.add(Tensor.empty(stage, dtype, device));
    const k = temps.add(kStage.reshape(stage.slice(1))),
      v = temps.add(vStage.reshape(stage.slice(1)));
    const stageSlots = temps.add(
      ints(
        Array.from({ length: T }, (_, t) => t),
        device,
      ),
    );
    const start = seq.length + offset;
    let ratio: Float32Array | undefined;
    const attention: LayerAttention = {
      kvTarget: () => ({ kPages: kStage, vPages: vStage, slots: stageSlots }),
      attend: (l, q) => {
        const spec = final ? seq.hooks.ratioFor?.(seq, l) : undefined;
        const result = attendPrefillChunk(pool, seq.caches[l], start, q, k, v, temps.add, spec);
        if (result.lazyRatio) ratio = result.lazyRatio.toFloat32Array();
        if (seq.observesQueries) seq.hooks.observeQueries?.(seq, l, q, start);
        return temps.add(result.out.reshape([T, c.heads * c.headDim]));
      },
    };
    const rows = (t: Tensor) => temps.add(t.rows(offset, T));
    runLayer(parts, scratch, rows(h), layer, rows(positions), attention);
    return ratio;
  } finally {
    temps.dispose();
  }
}

/**
 * What a prefill may change in a sequence, saved so that a prefill failing part-way (the pool
 * running out, a device error) leaves it exactly as it was: every cache back to its length and
 * pages (later pages go back to the pool), a cache the hooks cut back to the full cache it was
 * (rebuilt from a host copy of the tokens it held before the prefill, taken just before the cut:
 * at most sink + window of them, since a cache is cut only in the prefill that takes it past
 * that), ring slots the prompt overwrote restored from a copy taken first, and the hooks' state.
 */
class PrefillUndo {
  private readonly marks: Array<{ cache: LayerCache; length: number; pages: number }>;
  private readonly overwritten: Array<{ slots: Tensor; k: Tensor; v: Tensor }> = [];
  /** Per layer cut during the prefill, the keys and values its cache held before it (host copies). */
  private readonly beforeCut = new Map<number, { k: Tensor; v: Tensor }>();
  private readonly length: number;
  private readonly hooks: { restore(): void; dispose(): void } | undefined;

  constructor(
    private readonly parts: ModelParts,
    private readonly seq: Sequence,
    tokens: number,
  ) {
    this.length = seq.length;
    this.marks = seq.caches.map((cache) => ({ cache, length: cache.length, pages: cache.pageTable.length }));
    const { kPages, vPages } = parts.pool;
    try {
      for (const cache of seq.caches) {
        if (cache.kind !== "streaming") continue;
        const positions = cache.positionsOverwrittenBy(tokens);
        if (!positions.length) continue;
        const slots = ints(
          positions.map((p) => cache.slotOfPosition(p)),
          kPages.device,
        );
        try {
          this.overwritten.push({ slots, ...kernels.gatherKv({ kPages, vPages, slots }) });
        } catch (err) {
          slots.dispose();
          throw err;
        }
      }
      this.hooks = seq.hooks.savePoint?.();
      seq.beforeCut = this.keepBeforeCut;
    } catch (err) {
      this.dispose();
      throw err;
    }
  }

  restore(): void {
    const seq = this.seq;
    seq.length = this.length;
    // Every cache back to its length and pages first, so that the pages the prefill took are free
    // before a cut layer takes pages for its tokens again.
    this.marks.forEach((mark, layer) => {
      const cut = seq.caches[layer] !== mark.cache;
      if (cut && mark.length !== 0 && !this.beforeCut.has(layer))
        throw new Error(`internal: layer ${layer} was cut during a prefill that started at ${mark.length} tokens, and nothing was kept`);
      seq.restoreCache(layer, mark.cache);
      // A cut emptied the full cache: an empty one is exactly what a first prefill found. A
      // layer whose tokens were kept is rebuilt from them below, whether its cut happened or
      // failed part-way (the cache then still holds the prompt too, or some of it moved).
      if (this.beforeCut.has(layer)) mark.cache.rollBack(0, 0);
      else mark.cache.rollBack(mark.length, mark.pages);
    });
    const { kPages, vPages } = this.parts.pool;
    for (const [layer, kept] of this.beforeCut) {
      const mark = this.marks[layer];
      const slots = ints(mark.cache.reserve(mark.length), kPages.device);
      const k = kept.k.to(kPages.device),
        v = kept.v.to(kPages.device);
      try {
        kernels.appendKv({ k, v, kPages, vPages, slots });
      } finally {
        for (const t of [slots, k, v]) t.dispose();
      }
    }
    for (const { slots, k, v } of this.overwritten) kernels.appendKv({ k, v, kPages, vPages, slots });
    this.hooks?.restore();
  }

  dispose(): void {
    if (this.seq.beforeCut === this.keepBeforeCut) this.seq.beforeCut = undefined;
    for (const saved of this.overwritten) for (const t of Object.values(saved)) t.dispose();
    this.overwritten.length = 0;
    for (const kept of this.beforeCut.values()) for (const t of Object.values(kept)) t.dispose();
    this.beforeCut.clear();
    this.hooks?.dispose();
  }

  /** Copies to the host the tokens a cache held before this prefill, as it is about to be cut. */
  private readonly keepBeforeCut = (layer: number, cache: FullCache): void => {
    const mark = this.marks[layer];
    if (mark.cache !== cache || mark.length === 0 || this.beforeCut.has(layer)) return;
    const { kPages, vPages } = this.parts.pool;
    const slots = ints(
      Array.from({ length: mark.length }, (_, p) => cache.slotOfPosition(p)),
      kPages.device,
    );
    const made: Tensor[] = [slots];
    try {
      const { k, v } = kernels.gatherKv({ kPages, vPages, slots });
      made.push(k, v);
      const hostK = k.to("cpu");
      try {
        this.beforeCut.set(layer, { k: hostK, v: v.to("cpu") });
      } catch (err) {
        hostK.dispose();
        throw err;
      }
    } finally {
      for (const t of made) t.dispose();
    }
  };
}
