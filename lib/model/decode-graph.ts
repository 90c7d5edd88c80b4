// The batched decode step on CUDA as one replayed CUDA graph. Made op by op, a step crosses into
// native code for every kernel call of every layer (with its argument checks, output views,
// index uploads), and at small batches the GPU waits on JavaScript between short kernels.
// Here decode-step.ts's step is recorded once per (batch size, page-table widths) over buffers
// of that shape; a step then fills one Int32Array of indices, and one native call checks it,
// uploads what changed and replays the graph.
import { CudaGraph } from "../runtime/cuda-graph";
import { StepBuffers, tableWidths } from "./decode-step";
import type { ModelParts } from "./layer";
import type { Sequence } from "./sequence";

/** How decode steps ran, for benchmarks and debugging. */
export interface DecodeStats {
  /** Steps replayed from a graph. */
  graphSteps: number;
  /** Of those, steps launched ahead whose ids the step before chose on the device (Decoder.launchGreedy). */
  chainedSteps: number;
  /** Steps run op by op, by why they could not be replayed. */
  eagerSteps: Partial<Record<EagerReason, number>>;
  /** Graphs recorded (one per batch size, again when a layer's page tables outgrow their width). */
  recordings: number;
  /** Milliseconds, summed over the replayed steps, spent filling the index block (and recording) ... */
  fillMs: number;
  /** ... checking, uploading and launching it (the GPU starts here) ... */
  launchMs: number;
  /** ... and waiting for the output and reading it back. */
  readbackMs: number;
  /** Bytes of index block copied to the device, summed over the replayed steps. */
  uploadedBytes: number;
  /** Why graphs are off for this decoder (a recording failed), if they are. */
  unavailable?: string;
}

/**
 * Why a decode step ran op by op: the CPU has no graphs, LIGHTTRANSFER_DECODE_GRAPHS=off (read
 * on every step), a sequence's hooks observe its queries (a hybrid policy choosing layers), or a
 * recording failed (graphs stay off for the decoder; stats.unavailable says why).
 */
export type EagerReason = "cpu" | "graphs off" | "observing queries" | "recording failed";

// Table widths are rounded up to a multiple of this many pages, so one recording serves the
// next widthStep · pageSize tokens of every sequence.
const widthStep = 64;
// Recordings kept (the least recently used goes first): batch sizes change as a batch's
// sequences finish, and under continuous batching from step to step, so the cache holds as many
// batch sizes as a server's batch commonly spans (bench/README.md, "Serving under load", counts
// the recordings). Each recording holds buffers of its shape: a few hundred KiB per batch row for
// an 8B model, most of it the logits.
const maxPlans = 16;

/** One recorded step: its buffers and the graph over them. */
class StepPlan {
  constructor(
    readonly buffers: StepBuffers,
    readonly graph: CudaGraph,
  ) {}

  dispose(): void {
    this.graph.dispose();
    this.buffers.dispose();
  }
}

/** Decode steps on CUDA replayed from graphs, recorded as batch sizes and table widths need them. */
export class DecodeGraphs {
  private readonly plans = new Map<number, StepPlan>();

  constructor(
    private readonly parts: ModelParts,
    private readonly stats: DecodeStats,
  ) {}

  /**
   * The buffers a step of `seqs` would replay on now, without recording: those of the last step
   * of its batch size if its tables are wide enough.
   * @example if (graphs.current(seqs) === last) graphs.run(seqs, undefined);
   */
  current(seqs: readonly Sequence[]): StepBuffers | undefined {
    const buffers = this.plans.get(seqs.length)?.buffers;
    return buffers?.fits(tableWidths(seqs, this.parts.config.layers)) ? buffers : undefined;
  }

  /**
   * Replays one decode step (ids[b] appended to seqs[b]) and returns the buffers that hold its
   * logits and tokens, valid until the next step; undefined, with nothing changed, if the step
   * could not be recorded. Without ids, the step appends the tokens the last replay of these
   * buffers chose, where that replay left them on the device (current(seqs) must be those
   * buffers, and no other launch of them may come between).
   * @example const buffers = graphs.run(seqs, ids); // then buffers.tokens.toArray()
   */
  run(seqs: readonly Sequence[], ids: readonly number[] | undefined): StepBuffers | undefined {
    const t0 = performance.now();
    const plan = this.planFor(seqs.length, tableWidths(seqs, this.parts.config.layers));
    if (!plan) return undefined;
    let changed: Int32Array, t1: number;
    try {
      changed = plan.buffers.fill(seqs, ids);
      t1 = performance.now();
      plan.graph.launch(plan.buffers.host, changed);
    } catch (err) {
      // The fill took its rows as sent, but a fill that stopped part-way, or a launch refused
      // before it copied them, sent nothing: the next fill writes and names every row again.
      plan.buffers.forgetRows();
      throw err;
    }
    const s = this.stats;
    s.graphSteps++;
    if (!ids) s.chainedSteps++;
    s.fillMs += t1 - t0;
    s.launchMs += performance.now() - t1;
    for (let i = 1; i < changed.length; i += 2) s.uploadedBytes += 4 * changed[i];
    return plan.buffers;
  }

  dispose(): void {
    for (const p of this.plans.values()) p.dispose();
    this.plans.clear();
  }

  private planFor(batch: number, need: readonly number[]): StepPlan | undefined {
    const existing = this.plans.get(batch);
    this.plans.delete(batch);
    if (existing?.buffers.fits(need)) {
      this.plans.set(batch, existing);
      return existing;
    }
    // A layer never gets narrower than before, so a batch whose layers go back and forth
    // between full and ring does not record again each time.
    const widths = need.map((n, l) => Math.ceil(Math.max(n, existing?.buffers.widths[l] ?? 0) / widthStep) * widthStep);
    existing?.dispose();
    if (this.plans.size >= maxPlans) {
      const [oldest, plan] = this.plans.entries().next().value!;
      plan.dispose();
      this.plans.delete(oldest);
    }
    let buffers: StepBuffers | undefined;
    try {
      buffers = new StepBuffers(this.parts, batch, widths);
      const b = buffers;
      const plan = new StepPlan(
        b,
        CudaGraph.capture(b.block, () => b.run()),
      );
      this.plans.set(batch, plan);
      this.stats.recordings++;
      return plan;
    } catch (err) {
      buffers?.dispose();
      this.stats.unavailable = (err as Error).message;
      return undefined;
    }
  }
}
