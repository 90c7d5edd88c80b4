// Attention of one prefill chunk against its layer's cache: the chunk's queries see the cached
// prefix (through the sequence's pages) and the chunk's own keys, causally, with the cache's
// streaming mask; the chunk's K/V are then appended to the cache.
import * as kernels from "../kernels";
import { LayerCache } from "../cache/layer-cache";
import { PagePool } from "../cache/page-pool";
import { Tensor } from "../runtime/tensor";

/**
 * Attention of a prefill chunk at positions [start, start + T) of `cache`, and the chunk's K/V
 * appended. `temp` takes ownership of the temporaries it is handed (the caller frees them).
 */
export function attendPrefillChunk(
  pool: PagePool, cache: LayerCache, start: number, q: Tensor, k: Tensor, v: Tensor, temp: <T extends Tensor>(t: T) => T,
  lazyRatio?: kernels.LazyRatioOptions,
): kernels.PrefillAttentionResult {
  const T = q.shape[0];
  const { kPages, vPages } = pool;
  const streaming = cache.kind === "streaming" ? { sink: cache.sink, window: cache.window } : undefined;
  if (start === 0) {
    kernels.appendKv({ k, v, kPages, vPages, slots: temp(ints(cache.reserve(T), k.device)) });
    return kernels.prefillAttention({ q, k, v, streaming, lazyRatio });
  }
  // A later chunk: the keys it can see, in position order, then its own.
  const positions: number[] = [];
  if (streaming) {
    for (let p = 0; p < Math.min(streaming.sink, start); p++) positions.push(p);
    for (let p = Math.max(streaming.sink, start - streaming.window + 1); p < start; p++) positions.push(p);
  } else {
    for (let p = 0; p < start; p++) positions.push(p);
  }
  const prefix = positions.length;
  const keys = temp(Tensor.empty([prefix + T, k.shape[1], k.shape[2]], k.dtype, k.device));
  const values = temp(Tensor.empty(keys.shape, v.dtype, v.device));
  if (prefix > 0) {
    const slots = temp(ints(positions.map((p) => cache.slotOfPosition(p)), k.device));
    kernels.gatherKv({ kPages, vPages, slots, k: temp(keys.rows(0, prefix)), v: temp(values.rows(0, prefix)) });
  }
  temp(keys.rows(prefix, T)).copyFrom(k);
  temp(values.rows(prefix, T)).copyFrom(v);
  kernels.appendKv({ k, v, kPages, vPages, slots: temp(ints(cache.reserve(T), k.device)) });
  return kernels.prefillAttention({ q, k: keys, v: values, streaming, lazyRatio });
}

function ints(values: readonly number[], device: Tensor["device"]): Tensor {
  return Tensor.from(Int32Array.from(values), [values.length], { device });
}
