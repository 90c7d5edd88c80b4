// The memory planner: KV bytes per sequence with full and hybrid caches, and the largest batch a
// memory budget holds. It counts pages with the same arithmetic the runtime allocates them by
// (lib/common/geometry.ts), so the plan is what a session will really use.
import type { ModelConfig } from "../checkpoint/config";
import { defaultPageSize, fullCachePages, pageBytes, type RingShape, ringPages, streamingDefaults } from "../common/geometry";
import { type DType, dtypeBytes } from "../runtime/tensor";

/** The lazy layers' ring: `streamingDefaults` where left out. */
export interface MemoryPlanOptions extends Partial<RingShape> {
  /** Tokens per sequence (prompt + generation). */
  context: number;
  /** Device memory for weights and the KV pool together, in bytes. */
  memoryBytes: number;
  /** Bytes of weights on the device. */
  weightBytes: number;
  /** Layers kept full (P). */
  fullLayers: number;
  /** Tokens per KV page (default `defaultPageSize`). */
  pageSize?: number;
  dtype?: DType;
}

export interface MemoryPlan {
  pageBytes: number;
  /** Pages (and bytes) of the KV pool that fit beside the weights. */
  poolPages: number;
  poolBytes: number;
  full: SequencePlan;
  hybrid: SequencePlan;
}

export interface SequencePlan {
  /** KV pages and bytes of one sequence at the full context. */
  pages: number;
  bytes: number;
  /** Most pages one sequence holds at once while its prompt is prefilled (hybrid: P + 1 full caches). */
  prefillPeakPages: number;
  /** Largest batch of sequences at the full context that fits the pool, with room for one prefill at its peak. */
  maxBatch: number;
}

/** A sequence's layout: how many layers stay full, the lazy layers' ring, the page size. */
export interface SequenceLayout extends RingShape {
  /** Layers kept full (P); the others are rings. */
  fullLayers: number;
  pageSize: number;
}

/**
 * Most pages one sequence holds at once while a prompt of `tokens` tokens is prefilled into it:
 * P + 1 full caches (a layer is cut to its ring only once its prefill is done) and rings for the
 * rest; a sliding-window model's layers are all windows.
 * @example const peak = prefillPeakPages(config, 4096, { fullLayers: 16, sink: 4, window: 1020, pageSize: 16 });
 */
export function prefillPeakPages(config: ModelConfig, tokens: number, o: SequenceLayout): number {
  const L = config.layers;
  if (config.slidingWindow) return L * ringPages(tokens, { sink: 0, window: config.slidingWindow }, o.pageSize);
  const full = fullCachePages(tokens, o.pageSize),
    ring = ringPages(tokens, o, o.pageSize);
  return Math.min(L, o.fullLayers + 1) * full + Math.max(0, L - o.fullLayers - 1) * ring;
}

/**
 * @example
 * const plan = planMemory(config, { context: 32768, memoryBytes: 80e9, weightBytes: 16.1e9, fullLayers: 16 });
 * console.log(plan.full.maxBatch, plan.hybrid.maxBatch);
 */
export function planMemory(config: ModelConfig, o: MemoryPlanOptions): MemoryPlan {
  const pageSize = o.pageSize ?? defaultPageSize,
    sink = o.sink ?? streamingDefaults.sink,
    window = o.window ?? streamingDefaults.window;
  const dtype = o.dtype ?? "bf16";
  for (const [name, v] of Object.entries({ context: o.context, pageSize, window }))
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be an integer >= 1, got ${v}`);
  if (!(o.memoryBytes > 0)) throw new RangeError(`memoryBytes must be > 0, got ${o.memoryBytes}`);
  const L = config.layers,
    P = o.fullLayers;
  if (!Number.isInteger(P) || P < 0 || P > L) throw new RangeError(`fullLayers must be an integer in [0, ${L}], got ${P}`);
  const bytes = pageBytes({ pageSize, kvHeads: config.kvHeads, headDim: config.headDim, elementBytes: dtypeBytes(dtype) });
  const poolPages = Math.max(0, Math.floor((o.memoryBytes - o.weightBytes) / bytes));
  const full = fullCachePages(o.context, pageSize),
    ring = ringPages(o.context, { sink, window }, pageSize);
  const sequence = (pages: number, peak: number): SequencePlan => ({
    pages,
    bytes: pages * bytes,
    prefillPeakPages: peak,
    maxBatch: poolPages < peak ? 0 : 1 + Math.floor((poolPages - peak) / pages),
  });
  return {
    pageBytes: bytes,
    poolPages,
    poolBytes: poolPages * bytes,
    full: sequence(L * full, L * full),
    hybrid: sequence(
      P * full + (L - P) * ring,
      prefillPeakPages({ ...config, slidingWindow: null }, o.context, { fullLayers: P, sink, window, pageSize }),
    ),
  };
}
