// Standalone lazy ratio (DESIGN.md section 2) from the queries, keys and a prefill's LSE.

import type { StreamingShape } from "../common/geometry";
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

export interface LazyRatioKernelOptions extends StreamingShape {
  /** The trailing queries [nq, hq, d] (positions nk - nq .. nk - 1); at least min(lastQueries, nk). */
  q: Tensor;
  /** All keys [nk, hkv, d]. */
  k: Tensor;
  /** The prefill's LSE of those queries [nq, hq] (f32). */
  lse: Tensor;
  scale?: number;
  /** Preallocated output [hq] (f32). */
  out?: Tensor;
}

function lazyRatioOp(options: LazyRatioKernelOptions): PreparedOp<"lazyRatio", Tensor> {
  const o = readOptions("lazyRatio", options, ["q", "k", "lse", "out", "sink", "window", "lastQueries", "scale"]);
  const q = requireTensor("q", o.q),
    k = requireTensor("k", o.k),
    lse = requireTensor("lse", o.lse);
  const givenOut = optionalTensor("lazyRatio", "out", o.out);
  if (q.shape.length !== 3) throw new RangeError(`q must be [nq, hq, d], got shape [${q.shape.join(", ")}]`);
  const outputs = new Outputs();
  const out = outputs.take(givenOut, () => Tensor.empty([q.shape[1]], "f32", q.device));
  const args = {
    q: q.handle,
    k: k.handle,
    lse: lse.handle,
    out: out.handle,
    sink: clampToSpan(o.sink, k.shape[0]),
    window: clampToSpan(o.window, k.shape[0]),
    lastQueries: o.lastQueries,
    scale: o.scale,
  };
  return { op: "lazyRatio", args, outputs, result: out };
}

/**
 * Per-head lazy ratio [hq]: the mean, over the last `lastQueries` queries, of the attention
 * mass on the first `sink` and last `window` keys. A layer's ratio is the mean over heads.
 * @example
 * const ratio = kernels.lazyRatio({ q, k, lse, ...streamingDefaults }); // or any { sink, window, lastQueries }
 */
export function lazyRatio(options: LazyRatioKernelOptions): Tensor {
  return runOp(lazyRatioOp(options));
}

/**
 * `lazyRatio` off the event loop.
 * @example const lazy = (await kernels.lazyRatioAsync({ q, k, lse, ...streamingDefaults })).toFloat32Array(); // per head
 */
export function lazyRatioAsync(options: LazyRatioKernelOptions, asyncOptions: AsyncKernelOptions = {}): Promise<Tensor> {
  return runOpAsync(() => lazyRatioOp(options), asyncOptions);
}
