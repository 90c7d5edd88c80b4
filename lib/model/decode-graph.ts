// The batched decode step on CUDA as one replayed CUDA graph. Made op by op, a step of a
// 32-layer model crosses into native code ~1600 times (kernel calls with their argument checks,
// output allocations, views, index uploads, disposals), and at small batches the GPU waits on
// JS between short kernels: about half of a batch-1 step of Llama-3-8B on an H200.
// Here the step's kernels are recorded once per (batch size, page-table width) over buffers
// allocated for that shape; a step then builds one Int32Array of indices, and one native call
// checks it, uploads it and replays the graph. Per layer the graph runs RMSNorm, one stacked
// q|k|v GEMM, ropeAppendKv (RoPE and the K/V append in one kernel), paged decode attention,
// the o GEMM, RMSNorm, the gate|up GEMM, SwiGLU and the down GEMM — the eager step's math, so
// the logits agree with it within bf16 rounding.
//
// The index block a step uploads, for batch B, L layers and page-table width W:
//   ids [B] | positions [B] | slots [L, B] | seqLens [L, B] | pageTables [L, B, W]
// Page-table rows are rewritten only when their cache's pages changed, so a step's host work
// is O(L · B) apart from new pages.
import * as kernels from "../kernels";
import { PagePool } from "../cache/page-pool";
import { CudaGraph } from "../cuda-graph";
import { DeviceName, DType, Tensor } from "../tensor";
import { ModelConfig } from "./config";
import type { SequenceState } from "./decoder";
import { ModelWeights } from "./weights";

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
  /** Graphs recorded (one per batch size, again when the page tables outgrow their width). */
  recordings: number;
  /** Milliseconds, summed over the replayed steps, spent filling the index block (and recording) ... */
  fillMs: number;
  /** ... checking, uploading and launching it (the GPU starts here) ... */
  launchMs: number;
  /** ... and waiting for the logits and reading them back. */
  readbackMs: number;
  /** Why graphs are off for this decoder (a recording failed), if they are. */
  unavailable?: string;
}

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
    readonly width: number,
    private readonly layers: number,
    private readonly graph: CudaGraph,
    readonly logits: Tensor,
    private readonly tensors: Tensor[],
  ) {
    this.host = new Int32Array(graph.input.size);
    this.rowPages = new Array(layers * batch);
    this.rowLength = new Int32Array(layers * batch);
  }

  /** Fills the index block for ids[b] appended to seqs[b], reserving each cache's slot. */
  fill(seqs: readonly SequenceState[], ids: readonly number[]): void {
    const { host, batch: B, layers: L, width: W } = this;
    const slots = 2 * B, lens = slots + L * B, tables = lens + L * B;
    for (let b = 0; b < B; b++) {
      host[b] = ids[b];
      host[B + b] = seqs[b].length;
    }
    for (let l = 0; l < L; l++) {
      for (let b = 0; b < B; b++) {
        const cache = seqs[b].caches[l];
        const row = l * B + b;
        host[slots + row] = cache.reserve(1)[0];
        host[lens + row] = cache.validSlots;
        // A cache's page array only grows by appending until it is replaced (layer-cache.ts),
        // so the same array at the same length is the same row.
        const pages = cache.pageTable;
        if (this.rowPages[row] === pages && this.rowLength[row] === pages.length) continue;
        const at = tables + row * W;
        for (let i = 0; i < pages.length; i++) host[at + i] = pages[i];
        host.fill(0, at + pages.length, at + W);
        this.rowPages[row] = pages;
        this.rowLength[row] = pages.length;
      }
    }
  }

  /** Checks and uploads the filled block and replays the step. */
  launch(): void {
    this.graph.launch(this.host);
  }

  dispose(): void {
    this.graph.dispose();
    for (const t of this.tensors) t.dispose();
  }
}

/**
 * Decode steps on CUDA replayed from graphs. `run` returns undefined when a step must go the
 * eager way: graphs turned off (LIGHTTRANSFER_DECODE_GRAPHS=off, read on every step), a
 * sequence that observes its queries (a hybrid policy choosing layers), a sequence twice in
 * one batch, or a recording that failed.
 */
export class DecodeGraphs {
  private readonly plans = new Map<number, StepPlan>();
  private readonly counts: DecodeGraphStats = { graphSteps: 0, recordings: 0, fillMs: 0, launchMs: 0, readbackMs: 0 };

  constructor(private readonly parts: DecodeGraphParts) {}

  get stats(): DecodeGraphStats {
    return { ...this.counts };
  }

  /** One decode step (Decoder.decode's contract), or undefined if it must run eagerly. */
  run(seqs: readonly SequenceState[], ids: readonly number[]): Float32Array | undefined {
    if (process.env.LIGHTTRANSFER_DECODE_GRAPHS === "off" || this.counts.unavailable !== undefined) return undefined;
    if (seqs.length === 0 || seqs.some((s) => s.observeQueries) || new Set(seqs).size !== seqs.length) return undefined;
    const t0 = performance.now();
    // Reserving a slot adds at most one page to a cache.
    let width = 1;
    for (const s of seqs) for (const c of s.caches) width = Math.max(width, c.pageTable.length + 1);
    const plan = this.planFor(seqs.length, width);
    if (!plan) return undefined;
    plan.fill(seqs, ids);
    const t1 = performance.now();
    plan.launch();
    for (const s of seqs) s.length += 1;
    const t2 = performance.now();
    const logits = plan.logits.toFloat32Array();
    const c = this.counts;
    c.graphSteps++;
    c.fillMs += t1 - t0;
    c.launchMs += t2 - t1;
    c.readbackMs += performance.now() - t2;
    return logits;
  }

  dispose(): void {
    for (const p of this.plans.values()) p.dispose();
    this.plans.clear();
  }

  private planFor(batch: number, width: number): StepPlan | undefined {
    const existing = this.plans.get(batch);
    this.plans.delete(batch);
    if (existing && existing.width >= width) {
      this.plans.set(batch, existing);
      return existing;
    }
    existing?.dispose();
    if (this.plans.size >= maxPlans) {
      const [oldest, plan] = this.plans.entries().next().value!;
      plan.dispose();
      this.plans.delete(oldest);
    }
    try {
      const plan = this.record(batch, Math.ceil(width / widthStep) * widthStep);
      this.plans.set(batch, plan);
      this.counts.recordings++;
      return plan;
    } catch (err) {
      this.counts.unavailable = (err as Error).message;
      return undefined;
    }
  }

  /** Allocates the buffers of a (batch, width) step and records the step over them. */
  private record(B: number, W: number): StepPlan {
    const { config: c, weights: w, pool, invFreq, device, dtype } = this.parts;
    const L = c.layers, d = c.headDim;
    const made: Tensor[] = [];
    const keep = (t: Tensor) => (made.push(t), t);
    try {
      const block = keep(Tensor.empty([2 * B + 2 * L * B + L * B * W], "i32", device));
      const view = (offset: number, shape: number[]) => keep(keep(block.rows(offset, shape.reduce((a, n) => a * n, 1))).reshape(shape));
      const ids = view(0, [B]);
      const positions = view(B, [B]);
      const slots = Array.from({ length: L }, (_, l) => view(2 * B + l * B, [B]));
      const seqLens = Array.from({ length: L }, (_, l) => view(2 * B + L * B + l * B, [B]));
      const tables = Array.from({ length: L }, (_, l) => view(2 * B + 2 * L * B + l * B * W, [B, W]));
      const empty = (shape: number[]) => keep(Tensor.empty(shape, dtype, device));
      const h = empty([B, c.hiddenSize]), x = empty([B, c.hiddenSize]), o = empty([B, c.hiddenSize]);
      const mlp = empty([B, c.hiddenSize]), final = empty([B, c.hiddenSize]);
      const qkv = empty([B, (c.heads + 2 * c.kvHeads) * d]), q = empty([B, c.heads, d]), attn = empty([B, c.heads, d]);
      const attnRows = keep(attn.reshape([B, c.heads * d]));
      const gateUp = empty([B, 2 * c.intermediateSize]), act = empty([B, c.intermediateSize]);
      const logits = empty([B, c.vocabSize]);
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
      });
      return new StepPlan(B, W, L, graph, logits, made);
    } catch (err) {
      for (const t of made) t.dispose();
      throw err;
    }
  }
}
