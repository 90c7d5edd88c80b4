// Attention kernels: prefill (causal, optional streaming mask, LSE, fused lazy ratio) and
// paged decode. Outputs are allocated on the inputs' device unless passed in.
import { Tensor } from "../runtime/tensor";
import { addon } from "../runtime/native";
import { RingShape, StreamingShape, streamingDefaults } from "../common/geometry";
import {
  AsyncKernelOptions, clampRing, handleOf, optionalFlag, optionalTensor, Outputs, readNested, readOptions, requireTensor, runAsync, runSync,
} from "./call";

/**
 * Sinks + recent window of DESIGN.md section 2: key j visible to query q iff j <= q and (j < sink or q - j < window).
 * A sink or window longer than the keys means all of them (any integer up to 2^31 - 1 works as "no limit").
 */
export type StreamingMaskOptions = RingShape;

/** Which tokens count for the lazy ratio: the first `sink`, the last `window`, seen by the last `lastQueries` queries. */
export type LazyRatioOptions = StreamingShape;

export interface PrefillAttentionOptions {
  /** Queries [nq, hq, d]; query i sits at position nk - nq + i. */
  q: Tensor;
  /** Keys [nk, hkv, d] after RoPE; hq must be a multiple of hkv (GQA). */
  k: Tensor;
  /** Values [nk, hkv, d]. */
  v: Tensor;
  /** Softmax scale; default 1 / sqrt(d). */
  scale?: number;
  /** Streaming attention instead of full causal attention. */
  streaming?: StreamingMaskOptions;
  /** Also return the LSE [nq, hq] (f32). */
  returnLse?: boolean;
  /** Also return the per-head lazy ratio [hq] (f32) of this prefill; `true` measures it with `streamingDefaults`. */
  lazyRatio?: LazyRatioOptions | boolean;
  /** Preallocated outputs (plan once, run many times). */
  out?: Tensor;
  lse?: Tensor;
  lazyRatioOut?: Tensor;
}

export interface PrefillAttentionResult {
  out: Tensor;
  lse?: Tensor;
  lazyRatio?: Tensor;
}

const prefillKeys = ["q", "k", "v", "scale", "streaming", "returnLse", "lazyRatio", "out", "lse", "lazyRatioOut"] as const;
const lazyRatioKeys = ["sink", "window", "lastQueries"] as const;

function readLazyRatio(value: unknown): LazyRatioOptions | undefined {
  if (value === undefined || value === false) return undefined;
  if (value === true) return { ...streamingDefaults };
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new TypeError(`prefillAttention: lazyRatio must be true, false, undefined or { sink, window, lastQueries }, got ${String(value)}`);
  return readOptions("prefillAttention", value as LazyRatioOptions, lazyRatioKeys, "lazyRatio");
}

function preparePrefill(options: PrefillAttentionOptions) {
  const o = readOptions("prefillAttention", options, prefillKeys);
  const q = requireTensor("q", o.q), k = requireTensor("k", o.k), v = requireTensor("v", o.v);
  const givenOut = optionalTensor("prefillAttention", "out", o.out);
  const givenLse = optionalTensor("prefillAttention", "lse", o.lse);
  const givenRatio = optionalTensor("prefillAttention", "lazyRatioOut", o.lazyRatioOut);
  const wantLse = optionalFlag("prefillAttention", "returnLse", o.returnLse) || givenLse !== undefined;
  const ratioSpec = readLazyRatio(o.lazyRatio);
  const streaming = readNested("prefillAttention", "streaming", o.streaming, ["sink", "window"]);
  if (q.shape.length !== 3) throw new RangeError(`q must be [nq, hq, d], got shape [${q.shape.join(", ")}]`);
  const [nq, hq] = q.shape;
  const outputs = new Outputs();
  const out = outputs.take(givenOut, () => Tensor.empty(q.shape, q.dtype, q.device));
  const lse = wantLse ? outputs.take(givenLse, () => Tensor.empty([nq, hq], "f32", q.device)) : undefined;
  const lazyRatio = ratioSpec ? outputs.take(givenRatio, () => Tensor.empty([hq], "f32", q.device)) : undefined;
  const args = {
    q: q.handle,
    k: k.handle,
    v: v.handle,
    out: out.handle,
    lse: handleOf(lse),
    lazyRatio: handleOf(lazyRatio),
    ratio: clampRing(ratioSpec, k.shape[0]),
    scale: o.scale,
    streaming: clampRing(streaming, k.shape[0]),
  };
  return { args, outputs, result: { out, lse, lazyRatio } as PrefillAttentionResult };
}

/**
 * Prefill attention of one sequence on the CPU or CUDA, following the inputs' device.
 * @example
 * const { out, lse, lazyRatio } = kernels.prefillAttention({ q, k, v, returnLse: true,
 *   lazyRatio: streamingDefaults }); // or any { sink, window, lastQueries }
 * const perHead = lazyRatio!.toFloat32Array(); // mass on sinks + recent window, per head
 */
export function prefillAttention(options: PrefillAttentionOptions): PrefillAttentionResult {
  const { args, outputs, result } = preparePrefill(options);
  return runSync(outputs, () => addon().prefillAttention(args), result);
}

/** `prefillAttention` off the event loop. */
export function prefillAttentionAsync(
  options: PrefillAttentionOptions,
  asyncOptions: AsyncKernelOptions = {},
): Promise<PrefillAttentionResult> {
  const { args, outputs, result } = preparePrefill(options);
  return runAsync(outputs, () => addon().prefillAttentionAsync(args), result, asyncOptions);
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

function prepareDecode(options: DecodeAttentionOptions) {
  const o = readOptions("decodeAttention", options, decodeKeys);
  const q = requireTensor("q", o.q);
  const kPages = requireTensor("kPages", o.kPages), vPages = requireTensor("vPages", o.vPages);
  const pageTable = requireTensor("pageTable", o.pageTable), seqLens = requireTensor("seqLens", o.seqLens);
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
  return { args, outputs, result: { out, lse } as DecodeAttentionResult };
}

/**
 * One decode step of attention for a batch of sequences over the paged K/V pool. Full caches
 * and streaming rings mix freely in one batch: each row of the page table is its own cache.
 * @example
 * const { out } = kernels.decodeAttention({ q, kPages, vPages, pageTable, seqLens });
 */
export function decodeAttention(options: DecodeAttentionOptions): DecodeAttentionResult {
  const { args, outputs, result } = prepareDecode(options);
  return runSync(outputs, () => addon().decodeAttention(args), result);
}

/** `decodeAttention` off the event loop. */
export function decodeAttentionAsync(
  options: DecodeAttentionOptions,
  asyncOptions: AsyncKernelOptions = {},
): Promise<DecodeAttentionResult> {
  const { args, outputs, result } = prepareDecode(options);
  return runAsync(outputs, () => addon().decodeAttentionAsync(args), result, asyncOptions);
}
