// KV page-pool operations: append new tokens, and cut a full cache down to a streaming ring.
// Which slot or page each token goes to is the caller's policy (lib/cache); these only move bytes.

import type { RingShape } from "../common/geometry";
import { Tensor } from "../runtime/tensor";
import {
  type AsyncKernelOptions,
  clampToSpan,
  Outputs,
  optionalTensor,
  type PreparedOp,
  readOptions,
  requireTensor,
  runOp,
  runOpAsync,
} from "./call";

export interface AppendKvOptions {
  /** New keys/values [tokens, hkv, d], same dtype as the pool. */
  k: Tensor;
  v: Tensor;
  /** The pool [numPages, pageSize, hkv, d]. */
  kPages: Tensor;
  vPages: Tensor;
  /** i32 [tokens]: destination slot page * pageSize + offset of each token; -1 skips a token. Slots must not repeat (not checked: a repeated slot gets one of its rows, or a mix of them). */
  slots: Tensor;
}

function appendOp(options: AppendKvOptions): PreparedOp<"appendKv", void> {
  const o = readOptions("appendKv", options, ["k", "v", "kPages", "vPages", "slots"]);
  const args = {
    k: requireTensor("k", o.k).handle,
    v: requireTensor("v", o.v).handle,
    kPages: requireTensor("kPages", o.kPages).handle,
    vPages: requireTensor("vPages", o.vPages).handle,
    slots: requireTensor("slots", o.slots).handle,
  };
  return { op: "appendKv", args, outputs: new Outputs(), result: undefined };
}

/**
 * Writes new K/V rows into the page pool.
 * @example kernels.appendKv({ k, v, kPages, vPages, slots: Tensor.from(new Int32Array([17, 18]), [2]) });
 */
export function appendKv(options: AppendKvOptions): void {
  runOp(appendOp(options));
}

/**
 * `appendKv` off the event loop.
 * @example await kernels.appendKvAsync({ k, v, kPages, vPages, slots: Tensor.from(new Int32Array([17, 18]), [2]) });
 */
export function appendKvAsync(options: AppendKvOptions, asyncOptions: AsyncKernelOptions = {}): Promise<void> {
  return runOpAsync(() => appendOp(options), asyncOptions);
}

export interface CutToStreamingOptions extends RingShape {
  kPages: Tensor;
  vPages: Tensor;
  /** i32: the full cache's pages, at least ceil(length / pageSize). */
  srcPageTable: Tensor;
  /** i32: the ring's pages, at least ceil(min(length, sink + window) / pageSize); may reuse source pages. */
  dstPageTable: Tensor;
  /** Tokens in the full cache. */
  length: number;
}

function cutOp(options: CutToStreamingOptions): PreparedOp<"cutToStreaming", void> {
  const o = readOptions("cutToStreaming", options, ["kPages", "vPages", "srcPageTable", "dstPageTable", "length", "sink", "window"]);
  const args = {
    kPages: requireTensor("kPages", o.kPages).handle,
    vPages: requireTensor("vPages", o.vPages).handle,
    srcPageTable: requireTensor("srcPageTable", o.srcPageTable).handle,
    dstPageTable: requireTensor("dstPageTable", o.dstPageTable).handle,
    length: o.length,
    sink: clampToSpan(o.sink, o.length),
    window: clampToSpan(o.window, o.length),
  };
  return { op: "cutToStreaming", args, outputs: new Outputs(), result: undefined };
}

/**
 * Turns a full cache into the streaming ring: the `sink` first tokens keep slots 0..sink-1 and
 * the last `window` tokens go to slot sink + (p - sink) mod window, on the destination pages.
 * @example
 * kernels.cutToStreaming({ kPages, vPages, srcPageTable, dstPageTable, length: 5000, sink: streamingDefaults.sink, window: streamingDefaults.window });
 */
export function cutToStreaming(options: CutToStreamingOptions): void {
  runOp(cutOp(options));
}

/**
 * `cutToStreaming` off the event loop.
 * @example await kernels.cutToStreamingAsync({ kPages, vPages, srcPageTable, dstPageTable, length: 5000, sink: 4, window: 1020 });
 */
export function cutToStreamingAsync(options: CutToStreamingOptions, asyncOptions: AsyncKernelOptions = {}): Promise<void> {
  return runOpAsync(() => cutOp(options), asyncOptions);
}

export interface GatherKvOptions {
  kPages: Tensor;
  vPages: Tensor;
  /** i32 [length]: pool slots (page · pageSize + offset) to copy, in output order. */
  slots: Tensor;
  /** Preallocated outputs [length, hkv, d] (views such as `buffer.rows(0, n)` work). */
  k?: Tensor;
  v?: Tensor;
}

/**
 * Copies pool slots out of the page pool into contiguous K and V [length, hkv, d]: the keys a
 * later chunk of a long prompt attends to, in position order.
 * @example const { k, v } = kernels.gatherKv({ kPages, vPages, slots: Tensor.from(Int32Array.from(slotList), [n]) });
 */
export function gatherKv(options: GatherKvOptions): { k: Tensor; v: Tensor } {
  return runOp(gatherOp(options));
}

/**
 * `gatherKv` off the event loop.
 * @example const { k, v } = await kernels.gatherKvAsync({ kPages, vPages, slots });
 */
export function gatherKvAsync(options: GatherKvOptions, asyncOptions: AsyncKernelOptions = {}): Promise<{ k: Tensor; v: Tensor }> {
  return runOpAsync(() => gatherOp(options), asyncOptions);
}

function gatherOp(options: GatherKvOptions): PreparedOp<"gatherKv", { k: Tensor; v: Tensor }> {
  const o = readOptions("gatherKv", options, ["kPages", "vPages", "slots", "k", "v"]);
  const pool = requireTensor("kPages", o.kPages),
    vPages = requireTensor("vPages", o.vPages),
    slots = requireTensor("slots", o.slots);
  const givenK = optionalTensor("gatherKv", "k", o.k),
    givenV = optionalTensor("gatherKv", "v", o.v);
  const outputs = new Outputs();
  const shape = [slots.shape[0], pool.shape[2], pool.shape[3]];
  const k = outputs.take(givenK, () => Tensor.empty(shape, pool.dtype, pool.device));
  const v = outputs.take(givenV, () => Tensor.empty(shape, pool.dtype, pool.device));
  const args = { kPages: pool.handle, vPages: vPages.handle, slots: slots.handle, k: k.handle, v: v.handle };
  return { op: "gatherKv", args, outputs, result: { k, v } };
}
