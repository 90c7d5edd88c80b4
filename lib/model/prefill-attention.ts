// Attention of one prefill chunk against its layer's cache: the chunk's queries see the cached
// prefix (read through the sequence's page table) and the chunk's own keys, causally, with the
// cache's streaming mask; the chunk's K/V are then appended to the cache.

import type { LayerCache } from "../cache/layer-cache";
import type { PagePool } from "../cache/page-pool";
import * as kernels from "../kernels";
import { Tensor } from "../runtime/tensor";

/**
 * Attention of a prefill chunk at positions [start, start + T) of `cache`, and the chunk's K/V
 * appended. `temp` takes ownership of every tensor made here, the result's included (the caller
 * frees them).
 * @example
 * const { out } = attendPrefillChunk(pool, cache, cache.length, q, k, v, (t) => temps.add(t));
 */
export function attendPrefillChunk(
  pool: PagePool,
  cache: LayerCache,
  start: number,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  temp: <T extends Tensor>(t: T) => T,
  lazyRatio?: kernels.LazyRatioOptions,
): kernels.PrefillAttentionResult {
  const streaming = streamingMaskOf(cache);
  const cached = start > 0 ? cachedPrefix(pool, cache, start, temp) : undefined;
  // The slots are reserved before attention allocates its output, so a full pool fails with
  // nothing to free; they are written after it, because appending T tokens to a ring can
  // overwrite slots that early queries still read.
  const slots = cache.reserve(q.shape[0]);
  const result = kernels.prefillAttention({ q, k, v, cached, streaming, lazyRatio });
  temp(result.out);
  if (result.lazyRatio) temp(result.lazyRatio);
  kernels.appendKv({ k, v, kPages: pool.kPages, vPages: pool.vPages, slots: temp(ints(slots, k.device)) });
  return result;
}

/** The streaming mask a layer cache's attention uses: its ring's, or none for a full cache. */
function streamingMaskOf(cache: LayerCache): kernels.StreamingMaskOptions | undefined {
  return cache.kind === "streaming" ? { sink: cache.sink, window: cache.window } : undefined;
}

/** Positions [0, length) of `cache` as the cached prefix of a prefillAttention call. */
function cachedPrefix(pool: PagePool, cache: LayerCache, length: number, temp: <T extends Tensor>(t: T) => T): kernels.CachedPrefixOptions {
  return {
    kPages: pool.kPages,
    vPages: pool.vPages,
    pageTable: temp(ints(cache.pageTable, pool.kPages.device)),
    length,
    ring: streamingMaskOf(cache),
  };
}

/** An i32 tensor [n] of `values` on `device` (slots, page tables, positions). */
export function ints(values: ArrayLike<number>, device: Tensor["device"]): Tensor {
  return Tensor.from(Int32Array.from(values), [values.length], { device });
}
