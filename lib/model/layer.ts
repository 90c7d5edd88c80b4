// One decoder layer, described once. A pre-norm block (Llama, Mistral, Qwen2) over the residual
// stream h, in four projections, each with the norm before it or the residual add after it fused
// into its linear (kernels.linear's norm, ropeAppendKv, swiGluOutput and accumulate):
//   q, K/V = ropeAppendKv(rmsNorm(h)·Wqkvᵀ(+b)): q rotated, K/V (rope(k), v) written where the
//   executor says ; h += attention(q)·Woᵀ(+b) ; act = swiGlu(rmsNorm(h)·Wgate|upᵀ) ; h += act·Wdownᵀ
//
// Executors differ only in where a layer's K/V go and how its queries attend (LayerAttention):
// a decode step writes K/V straight into the sequences' caches and runs paged decode attention
// (op by op, or recorded into a CUDA graph over persistent buffers: decode-step.ts), a prefill
// chunk stages them and attends through attendPrefillChunk, which appends them to the cache in
// the order its cache kind needs (prefill.ts).

import type { PagePool } from "../cache/page-pool";
import type { ModelConfig } from "../checkpoint/config";
import type { LayerWeights, ModelWeights } from "../checkpoint/weights";
import * as kernels from "../kernels";
import { type DeviceName, type DType, Tensor } from "../runtime/tensor";

// A model's weights are written when it loads, never by a kernel of a forward pass, so each
// projection may start reading them before the kernel ahead of it has finished.
const constantWeight = true;

/** What every executor of the layer reads: the model and where its activations live. */
export interface ModelParts {
  config: ModelConfig;
  weights: ModelWeights;
  pool: PagePool;
  /** f32 [headDim / 2]: rotary inverse frequencies (rope.ts). */
  invFreq: Tensor;
  device: DeviceName;
  /** Activations and KV cache dtype: f32 on the CPU, the weights' 16-bit type on CUDA. */
  dtype: DType;
}

/** Where a layer's rotated keys and values go: ropeAppendKv's pool and slots. */
export interface KvTarget {
  kPages: Tensor;
  vPages: Tensor;
  /** i32 [tokens]. */
  slots: Tensor;
}

/** The executor's part of a layer: K/V placement and attention. */
export interface LayerAttention {
  /** Where layer `layer` writes the rotated keys and the values of this step's tokens. */
  kvTarget(layer: number): KvTarget;
  /**
   * Attention of the rotated queries q [tokens, heads, headDim] of `layer`, after its K/V were
   * written to kvTarget; returns [tokens, heads · headDim], owned by the executor.
   */
  attend(layer: number, q: Tensor): Tensor;
}

/**
 * A layer's intermediate activations for `rows` tokens, allocated once and reused by every layer
 * of a step (a recorded graph replays over the same buffers). A linear whose norm or SwiGLU runs
 * as its own kernel takes that output as call scratch (kernels.linear).
 * @example
 * const scratch = new LayerScratch(parts, tokens);
 * runLayer(parts, scratch, h, 0, positions, attention);
 * scratch.dispose();
 */
export class LayerScratch {
  readonly q: Tensor;
  readonly act: Tensor;
  private readonly all: Tensor[] = [];

  constructor({ config: c, dtype, device }: ModelParts, rows: number) {
    const empty = (shape: number[]) => {
      const t = Tensor.empty(shape, dtype, device);
      this.all.push(t);
      return t;
    };
    try {
      this.q = empty([rows, c.heads, c.headDim]);
      this.act = empty([rows, c.intermediateSize]);
    } catch (err) {
      this.dispose();
      throw err;
    }
  }

  dispose(): void {
    for (const t of this.all) t.dispose();
    this.all.length = 0;
  }
}

/**
 * Runs layer `layer` over the residual stream h [tokens, hidden] (updated in place) of tokens at
 * `positions` (i32 [tokens]), writing every intermediate into `scratch`; the executor's
 * `attention` places K/V and attends.
 * @example
 * for (let l = 0; l < config.layers; l++) runLayer(parts, scratch, h, l, positions, attention);
 */
export function runLayer(
  parts: ModelParts,
  scratch: LayerScratch,
  h: Tensor,
  layer: number,
  positions: Tensor,
  attention: LayerAttention,
): void {
  const w: LayerWeights = parts.weights.layers[layer];
  const eps = parts.config.rmsNormEps;
  const { q, act } = scratch;
  kernels.linear({
    x: h,
    norm: { weight: w.inputNorm, eps },
    weight: w.qkv,
    bias: w.qkvBias,
    out: q,
    ropeAppendKv: { positions, invFreq: parts.invFreq, ...attention.kvTarget(layer) },
    constantWeight,
  });
  kernels.linear({ x: attention.attend(layer, q), weight: w.o, bias: w.oBias, out: h, accumulate: true, constantWeight });
  kernels.linear({ x: h, norm: { weight: w.postNorm, eps }, weight: w.gateUp, out: act, swiGluOutput: true, constantWeight });
  kernels.linear({ x: act, weight: w.down, out: h, accumulate: true, constantWeight });
}

/**
 * The logits [tokens, vocab] of the residual stream h [tokens, hidden] after the last layer:
 * its rmsNorm through the output projection.
 * @example runHead(parts, h, logits);
 */
export function runHead(parts: ModelParts, h: Tensor, logits: Tensor): void {
  kernels.linear({
    x: h,
    norm: { weight: parts.weights.norm, eps: parts.config.rmsNormEps },
    weight: parts.weights.lmHead,
    out: logits,
    constantWeight,
  });
}
