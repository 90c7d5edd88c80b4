// The decoder graph: which operation runs when, for prefill (chunked) and batched decode steps,
// over the paged KV pool. Policy lives here; each step is one native call.
//
// A pre-norm block (Llama, Mistral, Qwen2):
//   x = rmsNorm(h) ; q, k, v = x·Wqᵀ(+b), x·Wkᵀ(+b), x·Wvᵀ(+b) ; rope(q, k) ; append k, v
//   h += attention(q, K, V)·Woᵀ ; x = rmsNorm(h) ; h += down(silu(gate(x)) · up(x))
// The residual add is fused into the next rmsNorm.
import * as kernels from "../kernels";
import { FullCache, LayerCache, StreamingCache } from "../cache/layer-cache";
import { PagePool, PoolExhaustedError } from "../cache/page-pool";
import { DeviceName, DType, Tensor } from "../runtime/tensor";
import { ModelConfig } from "../checkpoint/config";
import { DecodeGraphs } from "./decode-graph";
import { attendPrefillChunk } from "./prefill-attention";
import { ropeInverseFrequencies } from "./rope";
import { checkTokenIds } from "../checkpoint/token-ids";
import { LayerWeights, ModelWeights } from "../checkpoint/weights";

/** One sequence's caches (one per layer) and how many tokens it holds. */
export interface SequenceState {
  caches: LayerCache[];
  length: number;
  /** Sees every layer's rotated queries [T, hq, d] at absolute position `start` (a hybrid policy keeps the last ones). */
  observeQueries?: (layer: number, q: Tensor, start: number) => void;
}

/** How a hybrid policy takes part in prefill (lib/hybrid). */
export interface PrefillPolicy {
  /** The final chunk holds at least this many tokens (the lazy ratio needs the last queries). */
  minFinalChunk?: number;
  /** The lazy-ratio spec to compute for `layer` on the final chunk, or undefined. */
  ratioFor(layer: number, seq: SequenceState): kernels.LazyRatioOptions | undefined;
  /** Layer `layer` has its whole prompt cached; its per-head lazy ratio if one was asked for. */
  layerDone(layer: number, seq: SequenceState, perHeadRatio: Float32Array | undefined): void;
}

export interface PrefillOptions {
  chunkSize?: number;
  policy?: PrefillPolicy;
  allLogits?: boolean;
}

/** [offset, length] of each chunk: at most `size` tokens, the last one at least `minFinal` (when N allows). */
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

/** Temporaries of one step, disposed together. */
class Temps {
  private readonly list: Tensor[] = [];
  add<T extends Tensor>(t: T): T {
    this.list.push(t);
    return t;
  }
  dispose(): void {
    for (const t of this.list) t.dispose();
    this.list.length = 0;
  }
}

/**
 * Prompt tokens per prefill chunk unless asked otherwise. Each chunk costs ~35 native calls per
 * layer whatever its length, so short chunks leave a GPU waiting on JavaScript: a 4K prompt of
 * the 8B model prefilled in 1K chunks took twice as long on an H200 as in one chunk. 4K tokens of
 * activations (the gate|up projection, the largest) are ~235 MB at the 8B model's width in bf16.
 */
export const defaultPrefillChunk = 4096;

export class Decoder {
  private readonly invFreq: Tensor;
  /** The CUDA graph path of decode(); undefined on the CPU. */
  readonly graphs: DecodeGraphs | undefined;

  constructor(
    readonly config: ModelConfig,
    readonly weights: ModelWeights,
    readonly pool: PagePool,
    readonly device: DeviceName,
    /** Activations and KV cache dtype: f32 on the CPU, the weights' 16-bit type on CUDA. */
    readonly dtype: DType,
  ) {
    this.invFreq = Tensor.from(ropeInverseFrequencies(config), [config.headDim / 2], { device });
    this.graphs = device === "cpu" ? undefined : new DecodeGraphs({ config, weights, pool, invFreq: this.invFreq, device, dtype });
  }

  createSequence(): SequenceState {
    const { slidingWindow } = this.config;
    // Mistral's sliding window is a streaming cache without sinks: exact, and bounded.
    const caches = Array.from({ length: this.config.layers }, () =>
      slidingWindow ? new StreamingCache(this.pool, 0, slidingWindow) : new FullCache(this.pool),
    );
    return { caches, length: 0 };
  }

  releaseSequence(seq: SequenceState): void {
    for (const c of seq.caches) c.release();
  }

  /**
   * Runs prompt tokens through the model and fills the caches. The work is layer-major — every
   * chunk of the prompt through layer i, then layer i + 1 — so a hybrid policy learns layer i's
   * lazy ratio (and may cut its cache) before layer i + 1 allocates anything: at most P + 1
   * full caches of a sequence exist at once. Chunks of at most `chunkSize` tokens bound the
   * attention work per call. Returns the logits [vocab] after the last token, or with
   * `allLogits` those after every token [tokens · vocab] (for tests and scoring).
   */
  prefill(seq: SequenceState, ids: readonly number[], options: PrefillOptions = {}): Float32Array {
    checkTokenIds(ids, this.config.vocabSize, "prefill: ids");
    const N = ids.length;
    if (N === 0) throw new RangeError("prefill needs at least one token");
    const { policy } = options;
    const chunks = planChunks(N, options.chunkSize ?? defaultPrefillChunk, policy?.minFinalChunk ?? 1);
    const undo = new CacheUndo(this, seq, N);
    try {
      return this.prefillLayers(seq, ids, chunks, options);
    } catch (err) {
      undo.restore(seq);
      throw err;
    } finally {
      undo.dispose();
    }
  }

  private prefillLayers(seq: SequenceState, ids: readonly number[], chunks: Array<[number, number]>, options: PrefillOptions): Float32Array {
    const N = ids.length;
    const { policy } = options;
    const temps = new Temps();
    let mlpOut: Tensor | undefined;
    try {
      const start = seq.length;
      const idsT = temps.add(Tensor.from(Int32Array.from(ids), [N], { device: this.device }));
      const positions = temps.add(Tensor.from(Int32Array.from(ids, (_, i) => start + i), [N], { device: this.device }));
      const h = temps.add(kernels.embedding({ ids: idsT, table: this.weights.embed, dtype: this.dtype }));
      for (let i = 0; i < this.config.layers; i++) {
        const w = this.weights.layers[i];
        const next = Tensor.empty(h.shape, this.dtype, this.device);
        let ratio: Float32Array | undefined;
        try {
          for (const [offset, T] of chunks) {
            const step = new Temps();
            try {
              const hC = step.add(h.rows(offset, T));
              const x = step.add(this.norm(w.inputNorm, hC, mlpOut && step.add(mlpOut.rows(offset, T))));
              const { q, k, v } = this.project(w, x, T, step.add(positions.rows(offset, T)), step);
              const final = offset + T === N;
              const ratioSpec = final ? policy?.ratioFor(i, seq) : undefined;
              const attention = attendPrefillChunk(this.pool, seq.caches[i], start + offset, q, k, v, (t) => step.add(t), ratioSpec);
              step.add(attention.out);
              if (attention.lazyRatio) ratio = step.add(attention.lazyRatio).toFloat32Array();
              seq.observeQueries?.(i, q, start + offset);
              const flat = step.add(attention.out.reshape([T, this.config.heads * this.config.headDim]));
              const o = step.add(kernels.linear({ x: flat, weight: w.o }));
              const x2 = step.add(kernels.rmsNorm({ x: o, residual: hC, weight: w.postNorm, eps: this.config.rmsNormEps }));
              this.mlp(w, x2, step, step.add(next.rows(offset, T)));
            } finally {
              step.dispose();
            }
          }
        } catch (err) {
          next.dispose();
          throw err;
        }
        mlpOut?.dispose();
        mlpOut = next;
        policy?.layerDone(i, seq, ratio);
      }
      seq.length += N;
      // Usually only the last position's logits are needed.
      const rows = options.allLogits ? N : 1;
      const lastH = temps.add(h.rows(N - rows, rows));
      const lastMlp = temps.add(mlpOut!.rows(N - rows, rows));
      const final = temps.add(kernels.rmsNorm({ x: lastMlp, residual: lastH, weight: this.weights.norm, eps: this.config.rmsNormEps }));
      return temps.add(kernels.linear({ x: final, weight: this.weights.lmHead })).toFloat32Array();
    } finally {
      mlpOut?.dispose();
      temps.dispose();
    }
  }

  /**
   * One decode step for a batch: token ids[b] is appended to sequence b. Returns the logits
   * [batch · vocab] (row b for sequence b). On CUDA the step is replayed from a CUDA graph
   * (decode-graph.ts) when it can be; otherwise, and on the CPU, it runs op by op.
   */
  decode(seqs: readonly SequenceState[], ids: readonly number[]): Float32Array {
    this.checkStep(seqs, ids);
    const replayed = this.graphs?.run(seqs, ids, "logits");
    if (replayed) return replayed;
    return this.decodeEager(seqs, ids, (logits) => logits.toFloat32Array());
  }

  /**
   * decode() that hands the logits [batch, vocab] to `use` where they are (on the device on
   * CUDA) instead of reading them back; the tensor is valid only while `use` runs.
   */
  decodeThen<T>(seqs: readonly SequenceState[], ids: readonly number[], use: (logits: Tensor) => T): T {
    this.checkStep(seqs, ids);
    const replayed = this.graphs?.run(seqs, ids, "device");
    return replayed ? use(replayed) : this.decodeEager(seqs, ids, use);
  }

  /**
   * decode() followed by the greedy choice: each sequence's most likely next token (lowest id
   * on ties), the argmax of the logits decode() would return. The argmax runs where the logits
   * are, so on CUDA a step reads back batch integers instead of batch × vocab logits.
   */
  decodeGreedy(seqs: readonly SequenceState[], ids: readonly number[]): Int32Array {
    this.checkStep(seqs, ids);
    const replayed = this.graphs?.run(seqs, ids, "argmax");
    if (replayed) return replayed;
    return this.decodeEager(seqs, ids, (logits) => {
      const tokens = kernels.argmax({ logits });
      try {
        return tokens.toArray() as Int32Array;
      } finally {
        tokens.dispose();
      }
    });
  }

  /**
   * Checks a decode step before it touches any cache: one valid token id per sequence, and enough
   * free pages for every cache that grows. A step that fails part-way would leave some layers a
   * token ahead of the others; checked here, the pool running out is an error with nothing changed.
   */
  private checkStep(seqs: readonly SequenceState[], ids: readonly number[]): void {
    checkTokenIds(ids, this.config.vocabSize, "decode: ids");
    if (!Array.isArray(seqs) || seqs.length !== ids.length || seqs.length === 0)
      throw new RangeError(`decode needs one token id per sequence (at least one), got ${ids.length} id(s) for ${Array.isArray(seqs) ? seqs.length : "no"} sequence(s)`);
    let wanted = 0;
    for (const s of seqs) for (const c of s.caches) wanted += c.pageCountAfter(1) - c.pageTable.length;
    if (wanted > this.pool.freePages) throw new PoolExhaustedError(wanted, this.pool.freePages, this.pool.numPages);
  }

  /** The decode step op by op; hands the logits [batch, vocab] to `use`, then frees them. */
  private decodeEager<T>(seqs: readonly SequenceState[], ids: readonly number[], use: (logits: Tensor) => T): T {
    const temps = new Temps();
    try {
      const B = seqs.length;
      const { heads, headDim: d } = this.config;
      const idsT = temps.add(Tensor.from(Int32Array.from(ids), [B], { device: this.device }));
      const positions = temps.add(Tensor.from(Int32Array.from(seqs, (s) => s.length), [B], { device: this.device }));
      const h = temps.add(kernels.embedding({ ids: idsT, table: this.weights.embed, dtype: this.dtype }));
      let mlpOut: Tensor | undefined;
      for (let i = 0; i < this.config.layers; i++) {
        const w = this.weights.layers[i];
        const x = temps.add(this.norm(w.inputNorm, h, mlpOut));
        const { q, k, v } = this.project(w, x, B, positions, temps);
        seqs.forEach((s, b) => {
          if (!s.observeQueries) return;
          const row = q.rows(b, 1);
          s.observeQueries(i, row, s.length);
          row.dispose();
        });
        const caches = seqs.map((s) => s.caches[i]);
        const slots = caches.map((c) => c.reserveOne());
        kernels.appendKv({ k, v, kPages: this.pool.kPages, vPages: this.pool.vPages, slots: temps.add(this.ints(slots)) });
        const maxPages = Math.max(1, ...caches.map((c) => c.pageTable.length));
        const table = new Int32Array(B * maxPages);
        caches.forEach((c, b) => table.set(c.pageTable, b * maxPages));
        const { out } = kernels.decodeAttention({
          q, kPages: this.pool.kPages, vPages: this.pool.vPages,
          pageTable: temps.add(Tensor.from(table, [B, maxPages], { device: this.device })),
          seqLens: temps.add(this.ints(caches.map((c) => c.validSlots))),
        });
        temps.add(out);
        const o = temps.add(kernels.linear({ x: temps.add(out.reshape([B, heads * d])), weight: w.o }));
        const x2 = temps.add(kernels.rmsNorm({ x: o, residual: h, weight: w.postNorm, eps: this.config.rmsNormEps }));
        mlpOut = temps.add(this.mlp(w, x2, temps));
      }
      for (const s of seqs) s.length += 1;
      const final = temps.add(kernels.rmsNorm({ x: mlpOut!, residual: h, weight: this.weights.norm, eps: this.config.rmsNormEps }));
      return use(temps.add(kernels.linear({ x: final, weight: this.weights.lmHead })));
    } finally {
      temps.dispose();
    }
  }

  /**
   * Per-head lazy ratio of `layer` for queries q [m, hq, d] at the sequence's last m positions,
   * against its cache: the fused prefill kernel with every key read through the page table.
   */
  lazyRatioOfQueries(seq: SequenceState, layer: number, q: Tensor, spec: kernels.LazyRatioOptions): Float32Array {
    const temps = new Temps();
    try {
      const cache = seq.caches[layer];
      const ring = cache.kind === "streaming" ? { sink: cache.sink, window: cache.window } : undefined;
      const pageTable = temps.add(this.ints(cache.pageTable));
      const res = kernels.prefillAttention({
        q, streaming: ring, lazyRatio: spec,
        cached: { kPages: this.pool.kPages, vPages: this.pool.vPages, pageTable, length: seq.length, ring },
      });
      temps.add(res.out);
      return temps.add(res.lazyRatio!).toFloat32Array();
    } finally {
      temps.dispose();
    }
  }

  dispose(): void {
    this.graphs?.dispose();
    this.invFreq.dispose();
  }

  private ints(values: readonly number[]): Tensor {
    return Tensor.from(Int32Array.from(values), [values.length], { device: this.device });
  }

  /** rmsNorm of the residual stream; after layer 0 the previous MLP output is added in first. */
  private norm(weight: Tensor, h: Tensor, mlpOut: Tensor | undefined): Tensor {
    return kernels.rmsNorm({ x: mlpOut ?? h, residual: mlpOut ? h : undefined, weight, eps: this.config.rmsNormEps });
  }

  private project(w: LayerWeights, x: Tensor, T: number, positions: Tensor, temps: Temps) {
    const { heads, kvHeads, headDim: d } = this.config;
    const heads3 = (weight: Tensor, bias: Tensor | undefined, n: number) => {
      const flat = temps.add(kernels.linear({ x, weight, bias }));
      return temps.add(flat.reshape([T, n, d]));
    };
    const q = heads3(w.q, w.qBias, heads);
    const k = heads3(w.k, w.kBias, kvHeads);
    const v = heads3(w.v, w.vBias, kvHeads);
    kernels.rope({ q, k, positions, invFreq: this.invFreq });
    return { q, k, v };
  }

  private mlp(w: LayerWeights, x: Tensor, temps: Temps, out?: Tensor): Tensor {
    const gateUp = temps.add(kernels.linear({ x, weight: w.gateUp }));
    const act = temps.add(kernels.swiGlu({ x: gateUp }));
    return kernels.linear({ x: act, weight: w.down, out });
  }

}

/**
 * What a prefill may change in a sequence's caches, saved so that a prefill failing part-way
 * (the pool running out, a device error) leaves the sequence exactly as it was: every cache back
 * to its length and pages (later pages go back to the pool), a cache the policy cut back to the
 * empty full cache it was, and ring slots the prompt overwrote restored from a copy taken first.
 */
class CacheUndo {
  private readonly marks: Array<{ cache: LayerCache; length: number; pages: number }>;
  private readonly overwritten: Array<{ slots: Tensor; k: Tensor; v: Tensor }> = [];
  private readonly length: number;

  constructor(private readonly decoder: Decoder, seq: SequenceState, tokens: number) {
    this.length = seq.length;
    this.marks = seq.caches.map((cache) => ({ cache, length: cache.length, pages: cache.pageTable.length }));
    const { kPages, vPages } = decoder.pool;
    try {
      for (const cache of seq.caches) {
        if (cache.kind !== "streaming") continue;
        const positions = cache.positionsOverwrittenBy(tokens);
        if (!positions.length) continue;
        const slots = Tensor.from(Int32Array.from(positions, (p) => cache.slotOfPosition(p)), [positions.length], { device: kPages.device });
        try {
          this.overwritten.push({ slots, ...kernels.gatherKv({ kPages, vPages, slots }) });
        } catch (err) {
          slots.dispose();
          throw err;
        }
      }
    } catch (err) {
      this.dispose();
      throw err;
    }
  }

  restore(seq: SequenceState): void {
    seq.length = this.length;
    this.marks.forEach((mark, layer) => {
      const now = seq.caches[layer];
      if (now !== mark.cache) {
        // The policy cut this cache during the prefill: only a first prefill does, when the cut
        // cache was empty before it, so the emptied full cache is exactly what was there.
        if (mark.length !== 0) throw new Error(`internal: layer ${layer} was cut during a prefill that started at ${mark.length} tokens`);
        now.release();
        seq.caches[layer] = mark.cache;
      }
      mark.cache.rollBack(mark.length, mark.pages);
    });
    const { kPages, vPages } = this.decoder.pool;
    for (const { slots, k, v } of this.overwritten) kernels.appendKv({ k, v, kPages, vPages, slots });
  }

  dispose(): void {
    for (const saved of this.overwritten) for (const t of Object.values(saved)) t.dispose();
    this.overwritten.length = 0;
  }
}
