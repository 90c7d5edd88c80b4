// The memory planner: KV bytes per sequence with full and hybrid caches, and the largest batch a
// memory budget holds. It counts pages with the same arithmetic the runtime allocates them by
// (lib/common/geometry.ts), so the plan is what a session will really use.
import type { ModelConfig } from "../checkpoint/config";
import { defaultPageSize, fullCachePages, maxPageSize, pageBytes, type RingShape, ringPages } from "../common/geometry";
import { integerIn, maxTokens, optionalChoice, optionsObject, show } from "../common/validate";
import { type DType, dtypeBytes } from "../runtime/tensor";
import { checkedRingShape, keptFullLayers, type ResolvedHybrid } from "./options";

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
  /** KV dtype: "f32", "f16" or "bf16" (default "bf16"). */
  dtype?: DType;
}

/** KV caches hold floats; an "i32" cache is no dtype a model is loaded with. */
const kvDTypes = ["f32", "f16", "bf16"] as const;

/** How a device's memory splits between a model's weights and its KV pool, and what sequences of the planned context take and how many fit, with full attention and hybrid. */
export interface MemoryPlan {
  pageBytes: number;
  /** Pages (and bytes) of the KV pool that fit beside the weights. */
  poolPages: number;
  poolBytes: number;
  full: SequencePlan;
  /** null for a sliding-window model (Mistral): its layers are bounded already, with none full to make lazy. */
  hybrid: SequencePlan | null;
}

/** What one sequence of the planned context takes in one mode, and how many such sequences fit the pool. */
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
  /**
   * Most layers whose caches are full at once while a prompt is prefilled (default P + 1: a lazy
   * layer is cut only once its prefill is done, and any layer may be the last one chosen).
   */
  fullAtOnce?: number;
}

/**
 * The layout a sequence with these (resolved) hybrid options takes in a pool of `pageSize`-token pages.
 * @example const peak = prefillPeakPages(model.config, ids.length, sequenceLayout(resolveHybrid(options, L), L, model.pool.pageSize));
 */
export function sequenceLayout(hybrid: ResolvedHybrid, layers: number, pageSize: number): SequenceLayout {
  const fullLayers = keptFullLayers(hybrid, layers);
  const lazy = hybrid.mode === "off" ? [] : hybrid.lazyLayers;
  // A known lazy set is cut as each of its layers is done (or is rings from the start), so the
  // P + 1-th full cache exists only while a lazy layer after every kept one is prefilled.
  const fullAtOnce =
    lazy === undefined ? Math.min(layers, fullLayers + 1) : fullLayers + (hybrid.prefill === "full" && lazy.includes(layers - 1) ? 1 : 0);
  return { fullLayers, sink: hybrid.sink, window: hybrid.window, pageSize, fullAtOnce };
}

/**
 * Most pages one sequence holds at once while a prompt of `tokens` tokens is prefilled into it:
 * `fullAtOnce` full caches (P + 1 unless the layout says otherwise) and rings for the rest; a
 * sliding-window model's layers are all windows.
 * @example const peak = prefillPeakPages(config, 4096, { fullLayers: 16, sink: 4, window: 1020, pageSize: 16 });
 */
export function prefillPeakPages(config: ModelConfig, tokens: number, o: SequenceLayout): number {
  const L = config.layers;
  if (config.slidingWindow) return L * ringPages(tokens, { sink: 0, window: config.slidingWindow }, o.pageSize);
  const full = fullCachePages(tokens, o.pageSize),
    ring = ringPages(tokens, o, o.pageSize);
  const fullAtOnce = o.fullAtOnce ?? Math.min(L, o.fullLayers + 1);
  return fullAtOnce * full + (L - fullAtOnce) * ring;
}

/**
 * Most pages a prompt of `tokens` tokens holds while it is prefilled with `hybrid` into a pool of
 * `pageSize`-token pages: what a server's admission waits for, and what no prompt may exceed.
 * @example if (promptPeakPages(model.config, model.pool.pageSize, ids.length, hybrid) > model.pool.numPages) refuse();
 */
export function promptPeakPages(config: ModelConfig, pageSize: number, tokens: number, hybrid: ResolvedHybrid): number {
  return prefillPeakPages(config, tokens, sequenceLayout(hybrid, config.layers, pageSize));
}

/**
 * KV pages and bytes of one sequence at `context` tokens with full and with hybrid caches, and
 * the largest batch of each that fits beside the weights in `memoryBytes`. Every option is
 * checked: a wrong one is an Error that names it and the values it may take.
 * @example
 * const plan = planMemory(config, { context: 32768, memoryBytes: 80e9, weightBytes: 16.1e9, fullLayers: 16 });
 * console.log(plan.full.maxBatch, plan.hybrid?.maxBatch);
 */
export function planMemory(config: ModelConfig, options: MemoryPlanOptions): MemoryPlan {
  const what = "planMemory";
  checkPlanConfig(config);
  // Left out entirely it is an error, not {}: context, memoryBytes, weightBytes and fullLayers have no default.
  if (options === undefined)
    throw new TypeError(`${what}: options { context, memoryBytes, weightBytes, fullLayers } are required, got undefined`);
  const o = optionsObject(options, `${what}: options`);
  const context = integerIn(o.context, `${what}: context`, 1, maxTokens);
  const pageSize = integerIn(o.pageSize, `${what}: pageSize`, 1, maxPageSize, defaultPageSize);
  const { sink, window } = checkedRingShape(o, `${what}: sink`, `${what}: window`, `${what}: sink + window`);
  const dtype: DType = optionalChoice(o.dtype, `${what}: dtype`, kvDTypes) ?? "bf16";
  const memoryBytes = byteCount(o.memoryBytes, `${what}: memoryBytes`, false);
  const weightBytes = byteCount(o.weightBytes, `${what}: weightBytes`, true);
  const L = config.layers,
    P = integerIn(o.fullLayers, `${what}: fullLayers`, 0, L);
  const bytes = pageBytes({ pageSize, kvHeads: config.kvHeads, headDim: config.headDim, elementBytes: dtypeBytes(dtype) });
  const poolPages = Math.max(0, Math.floor((memoryBytes - weightBytes) / bytes));
  // A sliding-window model's layers each hold a window, full attention or not.
  const full = config.slidingWindow
      ? ringPages(context, { sink: 0, window: config.slidingWindow }, pageSize)
      : fullCachePages(context, pageSize),
    ring = ringPages(context, { sink, window }, pageSize);
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
    hybrid: config.slidingWindow
      ? null
      : sequence(P * full + (L - P) * ring, prefillPeakPages(config, context, { fullLayers: P, sink, window, pageSize })),
  };
}

/** The config fields the plan reads, checked so a wrong object is not a plan full of NaN. */
function checkPlanConfig(config: ModelConfig): void {
  if (typeof config !== "object" || config === null || Array.isArray(config))
    throw new TypeError(`planMemory: config must be a model config (model.config or readConfig(dir)), got ${show(config)}`);
  for (const key of ["layers", "kvHeads", "headDim"] as const)
    if (!Number.isInteger(config[key]) || config[key] < 1)
      throw new RangeError(
        `planMemory: config.${key} must be an integer >= 1, got ${show(config[key])}: pass model.config or readConfig(dir)`,
      );
}

/** A finite number of bytes: > 0, or >= 0 where zero is allowed (no weights on the device). */
function byteCount(value: unknown, what: string, zeroAllowed: boolean): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0 || (!zeroAllowed && value === 0))
    throw new RangeError(`${what} must be a finite number of bytes ${zeroAllowed ? ">= 0" : "> 0"}, got ${show(value)}`);
  return value;
}
