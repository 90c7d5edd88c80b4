// The batched decode step on CUDA as one replayed CUDA graph. Made op by op, a step of a
// 32-layer model crosses into native code ~1600 times (kernel calls with their argument checks,
// output allocations, views, index uploads, disposals), and at small batches the GPU waits on
// JS between short kernels: about half of a batch-1 step of Llama-3-8B on an H200.
// Here the step's kernels are recorded once per (batch size, page-table widths) over buffers
// allocated for that shape; a step then fills one Int32Array of indices, and one native call
// checks it, uploads what changed and replays the graph. Per layer the graph runs RMSNorm, one stacked
// q|k|v GEMM, ropeAppendKv (RoPE and the K/V append in one kernel), paged decode attention,
// the o GEMM, RMSNorm, the gate|up GEMM, SwiGLU and the down GEMM — the eager step's math, so
// the logits agree with it within bf16 rounding.
//
// The index block of a step, for batch B, L layers and layer l's page-table width W_l:
//   ids [B] | positions [B] | slots [L, B] | seqLens [L, B] | pageTables_0 [B, W_0] | ... | pageTables_{L-1}
// Each layer has its own width, so a ring layer's table is only as wide as its ring (64 pages at
// the default sink + window and page size), not as wide as the full layers'. Only what changed
// since the previous step is copied to the device: the first 2B + 2LB elements, and a table row
// when its cache's pages changed (a full cache gains a page every pageSize tokens). A step's host
// work is then O(L · B) apart from new pages, as is its upload.
//
// Last in the graph, each row of the logits is reduced to its most likely token, so a greedy step
// reads back B integers instead of B × vocab logits.
import * as kernels from "../kernels";
import { PagePool } from "../cache/page-pool";
import { CudaGraph } from "../runtime/cuda-graph";
import { DeviceName, DType, Tensor } from "../runtime/tensor";
import { ModelConfig } from "../checkpoint/config";
import type { SequenceState } from "./decoder";
import { ModelWeights } from "../checkpoint/weights";

/** What the step reads from its decoder. */
export interface DecodeGraphParts {
  config: ModelConfig;
  weights: ModelWeights;
  pool: PagePool;
  invFreq: Tensor;
  device: DeviceName;
  dtype: DType;
}

/** How decode steps ran, for benchmarks and debugging. */
export interface DecodeGraphStats {
  /** Steps replayed from a graph. */
  graphSteps: number;
  /** Graphs recorded (one per batch size, again when a layer's page tables outgrow their width). */
  recordings: number;
  /** Milliseconds, summed over the replayed steps, spent filling the index block (and recording) ... */
  fillMs: number;
  /** ... checking, uploading and launching it (the GPU starts here) ... */
  launchMs: number;
  /** ... and waiting for the logits and reading them back. */
  readbackMs: number;
  /** Bytes of index block copied to the device, summed over the replayed steps. */
  uploadedBytes: number;
  /** Why graphs are off for this decoder (a recording failed), if they are. */
  unavailable?: string;
}

/**
 * What a step returns: every sequence's logits, only each one's most likely token, or the logits
 * left on the device (the recording's own tensor, valid until the next step).
 */
export type StepOutput = "logits" | "argmax" | "device";

// Table widths are rounded up to a multiple of this many pages, so one recording serves the
// next widthStep · pageSize tokens of every sequence (1024 at page size 16).
const widthStep = 64;
// Recordings kept (the least recently used goes first): batch sizes change as generateBatch's
// sequences finish, and each recording holds buffers of its shape.
const maxPlans = 4;

/** One recorded step: its buffers, its graph, and the host copy of its index block. */
class StepPlan {
  /** Which page array, of what length, each (layer, sequence) table row holds. */
  private readonly rowPages: Array<readonly number[] | undefined>;
  private readonly rowLength: Int32Array;
  readonly host: Int32Array;

  constructor(
    readonly batch: number,
    readonly widths: readonly number[],
    /** Where layer l's page table starts in the block (tableOffsets). */
    private readonly tableAt: readonly number[],
    private readonly graph: CudaGraph,
    readonly logits: Tensor,
    readonly tokens: Tensor,
    private readonly tensors: Tensor[],
  ) {
    const L = widths.length;
    this.host = new Int32Array(graph.input.size);
    this.rowPages = new Array(L * batch);
    this.rowLength = new Int32Array(L * batch);
  }

  /** Whether every layer's table is at least as wide as `need`. */
  fits(need: readonly number[]): boolean {
    return need.every((n, l) => n <= this.widths[l]);
  }

  /**
   * Fills the index block for ids[b] appended to seqs[b], reserving each cache's slot. Returns
   * the (start, count) ranges of the block that changed.
   */
  fill(seqs: readonly SequenceState[], ids: readonly number[]): Int32Array {
    const { host, batch: B, widths, tableAt } = this;
    const L = widths.length;
    const slots = 2 * B, lens = slots + L * B;
    const changed = [0, tableAt[0]];
    for (let b = 0; b < B; b++) {
      host[b] = ids[b];
      host[B + b] = seqs[b].length;
    }
    for (let l = 0; l < L; l++) {
      const W = widths[l];
      for (let b = 0; b < B; b++) {
        const cache = seqs[b].caches[l];
        const row = l * B + b;
        host[slots + row] = cache.reserveOne();
        host[lens + row] = cache.validSlots;
        // A cache's page array only grows by appending until it is replaced (layer-cache.ts),
        // so the same array at the same length is the same row.
        const pages = cache.pageTable;
        if (this.rowPages[row] === pages && this.rowLength[row] === pages.length) continue;
        const at = tableAt[l] + b * W;
        host.set(pages, at);
        host.fill(0, at + pages.length, at + W);
        this.rowPages[row] = pages;
        this.rowLength[row] = pages.length;
        const last = changed.length - 2;
        if (changed[last] + changed[last + 1] === at) changed[last + 1] += W;
        else changed.push(at, W);
      }
    }
    return Int32Array.from(changed);
  }

  /** Checks and uploads the changed parts of the block and replays the step. */
  launch(changed: Int32Array): void {
    this.graph.launch(this.host, changed);
  }

  dispose(): void {
    this.graph.dispose();
    for (const t of this.tensors) t.dispose();
  }
}

/** Element offsets of each layer's page table in the index block (see the top of this file). */
function tableOffsets(batch: number, widths: readonly number[]): number[] {
  const offsets: number[] = [];
  let at = 2 * batch + 2 * widths.length * batch;
  for (const w of widths) {
    offsets.push(at);
    at += batch * w;
  }
  offsets.push(at);
  return offsets;
}

/**
 * Decode steps on CUDA replayed from graphs. `run` returns undefined when a step must go the
 * eager way: graphs turned off (LIGHTTRANSFER_DECODE_GRAPHS=off, read on every step), a
 * sequence that observes its queries (a hybrid policy choosing layers), a sequence twice in
 * one batch, or a recording that failed.
 */
export class DecodeGraphs {
  private readonly plans = new Map<number, StepPlan>();
  private readonly counts: DecodeGraphStats = { graphSteps: 0, recordings: 0, fillMs: 0, launchMs: 0, readbackMs: 0, uploadedBytes: 0 };

  constructor(private readonly parts: DecodeGraphParts) {}

  get stats(): DecodeGraphStats {
    return { ...this.counts };
  }

  /**
   * One decode step (Decoder.decode's contract): the logits [batch · vocab], with "argmax" each
   * sequence's most likely next token, with "device" the logits tensor [batch, vocab] still on
   * the device. Undefined if the step must run eagerly.
   */
  run(seqs: readonly SequenceState[], ids: readonly number[], output: "logits"): Float32Array | undefined;
  run(seqs: readonly SequenceState[], ids: readonly number[], output: "argmax"): Int32Array | undefined;
  run(seqs: readonly SequenceState[], ids: readonly number[], output: "device"): Tensor | undefined;
  run(seqs: readonly SequenceState[], ids: readonly number[], output: StepOutput): Float32Array | Int32Array | Tensor | undefined {
    if (process.env.LIGHTTRANSFER_DECODE_GRAPHS === "off" || this.counts.unavailable !== undefined) return undefined;
    if (seqs.length === 0 || seqs.some((s) => s.observeQueries) || new Set(seqs).size !== seqs.length) return undefined;
    const t0 = performance.now();
    const need = new Array<number>(this.parts.config.layers).fill(1);
    for (const s of seqs) s.caches.forEach((c, l) => (need[l] = Math.max(need[l], c.pageCountAfter(1))));
    const plan = this.planFor(seqs.length, need);
    if (!plan) return undefined;
    const changed = plan.fill(seqs, ids);
    const t1 = performance.now();
    plan.launch(changed);
    for (const s of seqs) s.length += 1;
    const t2 = performance.now();
    const result =
      output === "argmax" ? (plan.tokens.toArray() as Int32Array) : output === "logits" ? plan.logits.toFloat32Array() : plan.logits;
    const c = this.counts;
    c.graphSteps++;
    c.fillMs += t1 - t0;
    c.launchMs += t2 - t1;
    c.readbackMs += performance.now() - t2;
    for (let i = 1; i < changed.length; i += 2) c.uploadedBytes += 4 * changed[i];
    return result;
  }

  dispose(): void {
    for (const p of this.plans.values()) p.dispose();
    this.plans.clear();
  }

  private planFor(batch: number, need: readonly number[]): StepPlan | undefined {
    const existing = this.plans.get(batch);
    this.plans.delete(batch);
    if (existing?.fits(need)) {
      this.plans.set(batch, existing);
      return existing;
    }
    // A layer never gets narrower than before, so a batch whose layers go back and forth
    // between full and ring does not record again each time.
    const widths = need.map((n, l) => Math.ceil(Math.max(n, existing?.widths[l] ?? 0) / widthStep) * widthStep);
    existing?.dispose();
    if (this.plans.size >= maxPlans) {
      const [oldest, plan] = this.plans.entries().next().value!;
      plan.dispose();
      this.plans.delete(oldest);
    }
    try {
      const plan = this.record(batch, widths);
      this.plans.set(batch, plan);
      this.counts.recordings++;
      return plan;
    } catch (err) {
      this.counts.unavailable = (err as Error).message;
      return undefined;
    }
  }

  /** Allocates the buffers of a step of B sequences with these table widths and records it over them. */
  private record(B: number, widths: number[]): StepPlan {
    const { config: c, weights: w, pool, invFreq, device, dtype } = this.parts;
    const L = c.layers, d = c.headDim;
    const made: Tensor[] = [];
    const keep = (t: Tensor) => (made.push(t), t);
    try {
      const tableAt = tableOffsets(B, widths);
      const block = keep(Tensor.empty([tableAt[L]], "i32", device));
      const view = (offset: number, shape: number[]) => keep(keep(block.rows(offset, shape.reduce((a, n) => a * n, 1))).reshape(shape));
      const ids = view(0, [B]);
      const positions = view(B, [B]);
      const slots = Array.from({ length: L }, (_, l) => view(2 * B + l * B, [B]));
      const seqLens = Array.from({ length: L }, (_, l) => view(2 * B + L * B + l * B, [B]));
      const tables = Array.from({ length: L }, (_, l) => view(tableAt[l], [B, widths[l]]));
      const empty = (shape: number[]) => keep(Tensor.empty(shape, dtype, device));
      const h = empty([B, c.hiddenSize]), x = empty([B, c.hiddenSize]), o = empty([B, c.hiddenSize]);
      const mlp = empty([B, c.hiddenSize]), final = empty([B, c.hiddenSize]);
      const qkv = empty([B, (c.heads + 2 * c.kvHeads) * d]), q = empty([B, c.heads, d]), attn = empty([B, c.heads, d]);
      const attnRows = keep(attn.reshape([B, c.heads * d]));
      const gateUp = empty([B, 2 * c.intermediateSize]), act = empty([B, c.intermediateSize]);
      const logits = empty([B, c.vocabSize]);
      const tokens = keep(Tensor.empty([B], "i32", device));
      const eps = c.rmsNormEps;
      const { kPages, vPages } = pool;
      const graph = CudaGraph.capture(block, () => {
        kernels.embedding({ ids, table: w.embed, out: h });
        w.layers.forEach((lw, l) => {
          // After layer 0 the previous MLP output joins the residual stream first (as in Decoder).
          kernels.rmsNorm({ x: l === 0 ? h : mlp, residual: l === 0 ? undefined : h, weight: lw.inputNorm, eps, out: x });
          kernels.linear({ x, weight: lw.qkv, bias: lw.qkvBias, out: qkv });
          kernels.ropeAppendKv({ qkv, positions, invFreq, kPages, vPages, slots: slots[l], q });
          kernels.decodeAttention({ q, kPages, vPages, pageTable: tables[l], seqLens: seqLens[l], out: attn });
          kernels.linear({ x: attnRows, weight: lw.o, out: o });
          kernels.rmsNorm({ x: o, residual: h, weight: lw.postNorm, eps, out: x });
          kernels.linear({ x, weight: lw.gateUp, out: gateUp });
          kernels.swiGlu({ x: gateUp, out: act });
          kernels.linear({ x: act, weight: lw.down, out: mlp });
        });
        kernels.rmsNorm({ x: mlp, residual: h, weight: w.norm, eps, out: final });
        kernels.linear({ x: final, weight: w.lmHead, out: logits });
        kernels.argmax({ logits, out: tokens });
      });
      return new StepPlan(B, widths, tableAt, graph, logits, tokens, made);
    } catch (err) {
      for (const t of made) t.dispose();
      throw err;
    }
  }
}
