// One decoder layer, described once. A pre-norm block (Llama, Mistral, Qwen2):
//   x = rmsNorm(h) ; qkv = x·Wqkvᵀ(+b) ; q = rope(q), K/V = (rope(k), v) written where the
//   executor says ; a = attention(q) ; h += a·Woᵀ ; x = rmsNorm(h) ; h += down(swiGlu(x·Wgate|upᵀ))
// The residual add is fused into the next rmsNorm: a layer leaves its MLP output beside h, and
// the next layer's (or the final) rmsNorm adds it in.
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

/** The residual stream of a layer's tokens: h is updated in place; mlpIn/mlpOut may be one tensor. */
export interface ResidualRows {
  /** [tokens, hidden]. */
  h: Tensor;
  /** The previous layer's MLP output [tokens, hidden], added into h first; undefined before layer 0. */
  mlpIn: Tensor | undefined;
  /** Receives this layer's MLP output [tokens, hidden]. */
  mlpOut: Tensor;
}

/**
 * A layer's intermediate activations for `rows` tokens, allocated once so a step (or a recorded
 * graph) allocates nothing while it runs.
 * @example
 * const scratch = new LayerScratch(parts, tokens);
 * runLayer(parts, scratch, residual, 0, positions, attention);
 * scratch.dispose();
 */
export class LayerScratch {
  readonly x: Tensor;
  readonly qkv: Tensor;
  readonly q: Tensor;
  readonly o: Tensor;
  readonly gateUp: Tensor;
  readonly act: Tensor;
  private readonly all: Tensor[] = [];

  constructor({ config: c, dtype, device }: ModelParts, rows: number) {
    const empty = (shape: number[]) => {
      const t = Tensor.empty(shape, dtype, device);
      this.all.push(t);
      return t;
    };
    try {
      this.x = empty([rows, c.hiddenSize]);
      this.qkv = empty([rows, (c.heads + 2 * c.kvHeads) * c.headDim]);
      this.q = empty([rows, c.heads, c.headDim]);
      this.o = empty([rows, c.hiddenSize]);
      this.gateUp = empty([rows, 2 * c.intermediateSize]);
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
 * Runs layer `layer` over the tokens of `residual` (at `positions`, i32 [tokens]), writing
 * every intermediate into `scratch`; the executor's `attention` places K/V and attends.
 * @example
 * for (let l = 0; l < config.layers; l++)
 *   runLayer(parts, scratch, { h, mlpIn: l === 0 ? undefined : mlp, mlpOut: mlp }, l, positions, attention);
 */
export function runLayer(
  parts: ModelParts,
  scratch: LayerScratch,
  residual: ResidualRows,
  layer: number,
  positions: Tensor,
  attention: LayerAttention,
): void {
  const w: LayerWeights = parts.weights.layers[layer];
  const eps = parts.config.rmsNormEps;
  const { x, qkv, q, o, gateUp, act } = scratch;
  const { h, mlpIn, mlpOut } = residual;
  kernels.rmsNorm({ x: mlpIn ?? h, residual: mlpIn ? h : undefined, weight: w.inputNorm, eps, out: x });
  kernels.linear({ x, weight: w.qkv, bias: w.qkvBias, out: qkv });
  kernels.ropeAppendKv({ qkv, positions, invFreq: parts.invFreq, ...attention.kvTarget(layer), q });
  kernels.linear({ x: attention.attend(layer, q), weight: w.o, out: o });
  kernels.rmsNorm({ x: o, residual: h, weight: w.postNorm, eps, out: x });
  kernels.linear({ x, weight: w.gateUp, out: gateUp });
  kernels.swiGlu({ x: gateUp, out: act });
  kernels.linear({ x: act, weight: w.down, out: mlpOut });
}

/**
 * The logits [tokens, vocab] after the last layer: its MLP output joins h, then rmsNorm and the
 * output projection.
 * @example runHead(parts, { h, mlp }, { final, logits });
 */
export function runHead(parts: ModelParts, residual: { h: Tensor; mlp: Tensor }, out: { final: Tensor; logits: Tensor }): void {
  kernels.rmsNorm({ x: residual.mlp, residual: residual.h, weight: parts.weights.norm, eps: parts.config.rmsNormEps, out: out.final });
  kernels.linear({ x: out.final, weight: parts.weights.lmHead, out: out.logits });
}
