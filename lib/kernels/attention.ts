// Attention kernels: prefill (causal, optional streaming mask, LSE, fused lazy ratio) and
// paged decode. Outputs are allocated on the inputs' device unless passed in.

import { type RingShape, type StreamingShape, streamingDefaults } from "../common/geometry";
import { type PrefillKernelChoice, prefillKernelChoices } from "../runtime/native";
import { Tensor } from "../runtime/tensor";
import {
  type AsyncKernelOptions,
  clampRing,
  clampToSpan,
  handleOf,
  Outputs,
  optionalChoice,
  optionalFlag,
  optionalTensor,
  type PreparedOp,
  readNested,
  readOptions,
  requireTensor,
  runOp,
  runOpAsync,
} from "./call";

/**
 * Sinks + recent window of DESIGN.md section 2: key j visible to query q iff j <= q and (j < sink or q - j < window).
 * A sink or window longer than the keys means all of them (any integer up to 2^31 - 1 works as "no limit").
 */
export type StreamingMaskOptions = RingShape;

/** Which tokens count for the lazy ratio: the first `sink`, the last `window`, seen by the last `lastQueries` queries. */
export type LazyRatioOptions = StreamingShape;

/**
 * Positions [0, length) of one sequence's layer cache, read through its page table: logical slot
 * s is pool slot pageTable[s / pageSize] * pageSize + s % pageSize. A full cache holds position p
 * at slot p; a ring at p if p < sink, else sink + (p - sink) mod window.
 */
export interface CachedPrefixOptions {
  /** The page pool: [numPages, pageSize, hkv, d] each, dtype of q. */
  kPages: Tensor;
  vPages: Tensor;
  /** i32 [pages]: the cache's pages in slot order, covering min(length, sink + window) slots for a ring. */
  pageTable: Tensor;
  /** Cached positions; the call's own k/v follow at position `length`. */
  length: number;
  /** The cache is a streaming ring; the call then needs a streaming mask no larger than it. */
  ring?: StreamingMaskOptions;
}

export interface PrefillAttentionOptions {
  /** Queries [nq, hq, d]; query i sits at position nk - nq + i, nk = (cached length) + (k's tokens). */
  q: Tensor;
  /** Keys [n, hkv, d] after RoPE at the positions after the cached prefix; hq must be a multiple of hkv (GQA). Optional with `cached`. */
  k?: Tensor;
  /** Values [n, hkv, d]; given exactly when k is. */
  v?: Tensor;
  /** Earlier keys read from the page pool; the call must run before its own K/V are appended to a ring. */
  cached?: CachedPrefixOptions;
  /** Softmax scale; default 1 / sqrt(d). */
  scale?: number;
  /** Streaming attention instead of full causal attention. */
  streaming?: StreamingMaskOptions;
  /** Also return the LSE [nq, hq] (f32). */
  returnLse?: boolean;
  /**
   * Also return the per-head lazy ratio [hq] (f32) of this prefill; `true` measures it with
   * `streamingDefaults`. It is the mass of the attention this call computes: with `streaming`,
   * that of the streaming softmax (a ring layer's own), not DESIGN's causal one.
   */
  lazyRatio?: LazyRatioOptions | boolean;
  /** Preallocated outputs (plan once, run many times). */
  out?: Tensor;
  lse?: Tensor;
  lazyRatioOut?: Tensor;
  /** The CUDA kernel (`auto`: `wgmma` on H100/H200, `mmaSync` elsewhere); when not given, LIGHTTRANSFER_PREFILL_KERNEL, else `auto`. */
  kernel?: PrefillKernelChoice;
}

export interface PrefillAttentionResult {
  out: Tensor;
  lse?: Tensor;
  lazyRatio?: Tensor;
}

const prefillKeys = [
  "q",
  "k",
  "v",
  "cached",
  "scale",
  "streaming",
  "returnLse",
  "lazyRatio",
  "out",
  "lse",
  "lazyRatioOut",
  "kernel",
] as const;

export { type PrefillKernelChoice, prefillKernelChoices };

const lazyRatioKeys = ["sink", "window", "lastQueries"] as const;

function readLazyRatio(value: unknown): LazyRatioOptions | undefined {
  if (value === undefined || value === false) return undefined;
  if (value === true) return { ...streamingDefaults };
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new TypeError(
      `prefillAttention: lazyRatio must be true, false, undefined or { sink, window, lastQueries }, got ${String(value)}`,
    );
  return readOptions("prefillAttention", value as LazyRatioOptions, lazyRatioKeys, "lazyRatio");
}

const cachedKeys = ["kPages", "vPages", "pageTable", "length", "ring"] as const;

function readCached(value: CachedPrefixOptions | undefined) {
  const c = readNested("prefillAttention", "cached", value, cachedKeys);
  if (c === undefined) return undefined;
  const ring = readNested("prefillAttention", "cached.ring", c.ring, ["sink", "window"]);
  const args = {
    kPages: requireTensor("cached.kPages", c.kPages).handle,
    vPages: requireTensor("cached.vPages", c.vPages).handle,
    pageTable: requireTensor("cached.pageTable", c.pageTable).handle,
    length: c.length,
    ringSink: ring?.sink,
    ringWindow: ring?.window,
  };
  return { args, length: typeof c.length === "number" ? c.length : 0 };
}

function preparePrefill(options: PrefillAttentionOptions): PreparedOp<"prefillAttention", PrefillAttentionResult> {
  const o = readOptions("prefillAttention", options, prefillKeys);
  const cached = readCached(o.cached);
  const q = requireTensor("q", o.q);
  const k = cached ? optionalTensor("prefillAttention", "k", o.k) : requireTensor("k", o.k);
  const v = cached ? optionalTensor("prefillAttention", "v", o.v) : requireTensor("v", o.v);
  const givenOut = optionalTensor("prefillAttention", "out", o.out);
  const givenLse = optionalTensor("prefillAttention", "lse", o.lse);
  const givenRatio = optionalTensor("prefillAttention", "lazyRatioOut", o.lazyRatioOut);
  const wantLse = optionalFlag("prefillAttention", "returnLse", o.returnLse) || givenLse !== undefined;
  const ratioSpec = readLazyRatio(o.lazyRatio);
  if (givenRatio && !ratioSpec)
    throw new TypeError(
      "prefillAttention: lazyRatioOut is given but lazyRatio is not: pass lazyRatio (true, or { sink, window, lastQueries }) to measure it into lazyRatioOut",
    );
  const streaming = readNested("prefillAttention", "streaming", o.streaming, ["sink", "window"]);
  const kernel = optionalChoice("prefillAttention", "kernel", o.kernel, prefillKernelChoices);
  if (q.shape.length !== 3) throw new RangeError(`q must be [nq, hq, d], got shape [${q.shape.join(", ")}]`);
  const [nq, hq, d] = q.shape;
  const keys = (cached?.length ?? 0) + (k?.shape[0] ?? 0);
  const outputs = new Outputs();
  const out = outputs.take(givenOut, () => Tensor.empty(q.shape, q.dtype, q.device));
  const lse = wantLse ? outputs.take(givenLse, () => Tensor.empty([nq, hq], "f32", q.device)) : undefined;
  const lazyRatio = ratioSpec ? outputs.take(givenRatio, () => Tensor.empty([hq], "f32", q.device)) : undefined;
  const args = {
    q: q.handle,
    k: handleOf(k),
    v: handleOf(v),
    // A ring of "no limit" is cut like the masks, to the keys there are.
    cached: cached && {
      ...cached.args,
      ringSink: clampToSpan(cached.args.ringSink, keys),
      ringWindow: clampToSpan(cached.args.ringWindow, keys),
    },
    out: out.handle,
    lse: handleOf(lse),
    lazyRatio: handleOf(lazyRatio),
    ratio: clampRing(ratioSpec, keys),
    scale: o.scale ?? 1 / Math.sqrt(d),
    streaming: clampRing(streaming, keys),
    ...(kernel && { kernel }),
  };
  return { op: "prefillAttention", args, outputs, result: { out, lse, lazyRatio } };
}

/**
 * Prefill attention of one sequence on the CPU or CUDA, following the inputs' device. The keys
 * are k/v alone, or a cached prefix read through the sequence's page table followed by k/v.
 * @example
 * const { out, lse, lazyRatio } = kernels.prefillAttention({ q, k, v, returnLse: true,
 *   lazyRatio: streamingDefaults }); // or any { sink, window, lastQueries }
 * const perHead = lazyRatio!.toFloat32Array(); // mass on sinks + recent window, per head
 * // A later chunk of a prompt over a ring cache (sink 4, window 1020) holding 5000 positions:
 * const chunk = kernels.prefillAttention({ q, k, v, streaming: { sink: 4, window: 1020 },
 *   cached: { kPages, vPages, pageTable, length: 5000, ring: { sink: 4, window: 1020 } } });
 * // The Ampere-class kernel on an H100, to compare with the default wgmma one:
 * const older = kernels.prefillAttention({ q, k, v, kernel: "mmaSync" });
 */
export function prefillAttention(options: PrefillAttentionOptions): PrefillAttentionResult {
  return runOp(preparePrefill(options));
}

/**
 * `prefillAttention` off the event loop.
 * @example const { out } = await kernels.prefillAttentionAsync({ q, k, v }, { signal }); // the server answers other requests meanwhile
 */
export function prefillAttentionAsync(
  options: PrefillAttentionOptions,
  asyncOptions: AsyncKernelOptions = {},
): Promise<PrefillAttentionResult> {
  return runOpAsync(() => preparePrefill(options), asyncOptions);
}

export interface DecodeAttentionOptions {
  /** One query per sequence: [batch, hq, d]. */
  q: Tensor;
  /** The page pool: [numPages, pageSize, hkv, d] each. */
  kPages: Tensor;
  vPages: Tensor;
  /** i32 [batch, maxPagesPerSeq]: slot s of sequence b is at page pageTable[b][s / pageSize]. */
  pageTable: Tensor;
  /** i32 [batch]: valid slots per sequence (a streaming ring passes min(length, sink + window)). */
  seqLens: Tensor;
  scale?: number;
  returnLse?: boolean;
  out?: Tensor;
  lse?: Tensor;
}

export interface DecodeAttentionResult {
  out: Tensor;
  lse?: Tensor;
}

const decodeKeys = ["q", "kPages", "vPages", "pageTable", "seqLens", "scale", "returnLse", "out", "lse"] as const;

function prepareDecode(options: DecodeAttentionOptions): PreparedOp<"decodeAttention", DecodeAttentionResult> {
  const o = readOptions("decodeAttention", options, decodeKeys);
  const q = requireTensor("q", o.q);
  const kPages = requireTensor("kPages", o.kPages),
    vPages = requireTensor("vPages", o.vPages);
  const pageTable = requireTensor("pageTable", o.pageTable),
    seqLens = requireTensor("seqLens", o.seqLens);
  const givenOut = optionalTensor("decodeAttention", "out", o.out);
  const givenLse = optionalTensor("decodeAttention", "lse", o.lse);
  const wantLse = optionalFlag("decodeAttention", "returnLse", o.returnLse) || givenLse !== undefined;
  if (q.shape.length !== 3) throw new RangeError(`q must be [batch, hq, d], got shape [${q.shape.join(", ")}]`);
  const outputs = new Outputs();
  const out = outputs.take(givenOut, () => Tensor.empty(q.shape, q.dtype, q.device));
  const lse = wantLse ? outputs.take(givenLse, () => Tensor.empty([q.shape[0], q.shape[1]], "f32", q.device)) : undefined;
  const args = {
    q: q.handle,
    kPages: kPages.handle,
    vPages: vPages.handle,
    pageTable: pageTable.handle,
    seqLens: seqLens.handle,
    out: out.handle,
    lse: handleOf(lse),
    scale: o.scale,
  };
  return { op: "decodeAttention", args, outputs, result: { out, lse } };
}

/**
 * One decode step of attention for a batch of sequences over the paged K/V pool. Full caches
 * and streaming rings mix freely in one batch: each row of the page table is its own cache.
 * @example
 * const { out } = kernels.decodeAttention({ q, kPages, vPages, pageTable, seqLens });
 */
export function decodeAttention(options: DecodeAttentionOptions): DecodeAttentionResult {
  return runOp(prepareDecode(options));
}

/**
 * `decodeAttention` off the event loop.
 * @example const { out } = await kernels.decodeAttentionAsync({ q, kPages, vPages, pageTable, seqLens }, { signal });
 */
export function decodeAttentionAsync(
  options: DecodeAttentionOptions,
  asyncOptions: AsyncKernelOptions = {},
): Promise<DecodeAttentionResult> {
  return runOpAsync(() => prepareDecode(options), asyncOptions);
}
