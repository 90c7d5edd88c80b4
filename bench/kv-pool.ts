// The KV pool a benchmark sizes for one sequence: every layer's full cache of its tokens.
import { readConfig } from "../lib/checkpoint/config";
import { fullCachePages, pageBytes } from "../lib/common/geometry";

/**
 * Bytes of the K/V pages that hold `tokens` tokens of one sequence in every layer of the
 * checkpoint in `dir`, with 16-bit K/V (the CUDA activations) in pages of `pageSize` slots.
 * @example const kvCacheBytes = oneSequenceKvBytes(modelDir, 16384, 16);
 */
export function oneSequenceKvBytes(dir: string, tokens: number, pageSize: number): number {
  const c = readConfig(dir);
  return c.layers * fullCachePages(tokens, pageSize) * pageBytes({ pageSize, kvHeads: c.kvHeads, headDim: c.headDim, elementBytes: 2 });
}
