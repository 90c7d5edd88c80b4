// The geometry of the KV cache and of streaming layers, and their defaults, in one place: the
// sink / window / lastQueries triple (DESIGN.md section 2), the page size, a ring's slots, and
// how many pages a cache holds. The page pool, the layer caches, the hybrid planner and policy,
// the kernels' option types, the API and the CLI all read it from here. It lives in lib/common
// because the kernels' option types (below lib/cache) describe the same triple.

/**
 * A streaming ring (DESIGN.md section 2): the first `sink` tokens and the last `window` tokens.
 * As a mask, key j is visible to query q iff j <= q and (j < sink or q - j < window).
 */
export interface RingShape {
  /** Sink tokens (S): the first tokens of the sequence, kept for good. */
  sink: number;
  /** Recent tokens (W) kept after the sinks. */
  window: number;
}

/**
 * A ring plus the queries that measure a layer's lazy ratio: the attention mass of the last
 * `lastQueries` queries on the first `sink` and last `window` keys.
 */
export interface StreamingShape extends RingShape {
  /** Last queries (w_last) whose attention defines the lazy ratio. */
  lastQueries: number;
}

/**
 * The paper's streaming shape: S = 4, W = 1020, and the last 32 queries for the lazy ratio.
 * @example const session = model.createSession({ hybrid: { mode: "auto", window: 2 * streamingDefaults.window } }); // a longer window, the same sinks
 */
export const streamingDefaults: Readonly<StreamingShape> = Object.freeze({ sink: 4, window: 1020, lastQueries: 32 });

/**
 * Bounds of the streaming shape: a ring's slots (sink + window) are token positions, int32 in the
 * kernels, and a ring is allocated in full once a sequence grows past it.
 */
export const streamingLimits = Object.freeze({ sink: 1 << 20, window: 1 << 30, ring: 1 << 30, lastQueries: 1 << 16 });

/**
 * Tokens per KV page unless the model is loaded with another `pageSize`.
 * @example const pagesPerLayer = Math.ceil(promptTokens / defaultPageSize); // what a full layer cache of the prompt takes from the pool
 */
export const defaultPageSize = 16;

/** Most tokens per KV page: a page is one unit of allocation for every layer. */
export const maxPageSize = 4096;

/**
 * Slots of a ring: sink + window.
 * @example ringSize(streamingDefaults) // 1024
 */
export function ringSize(ring: RingShape): number {
  return ring.sink + ring.window;
}

/**
 * The ring slot of token position `p`: p itself among the sinks, else sink + (p - sink) mod window.
 * @example ringSlot({ sink: 4, window: 8 }, 13) // 5: position 12 went to slot 4, 13 to 5
 */
export function ringSlot(ring: RingShape, p: number): number {
  return p < ring.sink ? p : ring.sink + ((p - ring.sink) % ring.window);
}

/**
 * Slots a cache of `tokens` tokens holds: all of them, or for a ring at most sink + window.
 * @example heldSlots(5000, { sink: 4, window: 1020 }) // 1024
 */
export function heldSlots(tokens: number, ring?: RingShape): number {
  return ring ? Math.min(tokens, ringSize(ring)) : tokens;
}

/**
 * Pages of a full cache of `tokens` tokens.
 * @example fullCachePages(33, 16) // 3
 */
export function fullCachePages(tokens: number, pageSize: number): number {
  return Math.ceil(tokens / pageSize);
}

/**
 * Pages of a ring after `tokens` tokens: it grows like a full cache until it holds sink + window
 * slots, and stays there.
 * @example ringPages(5000, { sink: 4, window: 1020 }, 16) // 64
 */
export function ringPages(tokens: number, ring: RingShape, pageSize: number): number {
  return Math.ceil(heldSlots(tokens, ring) / pageSize);
}

/**
 * Pages a cache holds once `count` more tokens are appended to its `length`, given the `pages`
 * it holds now (appending never gives pages back). `ring` makes it a streaming cache.
 * @example pagesAfterAppend({ pages: 1, length: 16, count: 1, pageSize: 16 }) // 2
 */
export function pagesAfterAppend(o: { pages: number; length: number; count: number; pageSize: number; ring?: RingShape }): number {
  return Math.max(o.pages, Math.ceil(heldSlots(o.length + o.count, o.ring) / o.pageSize));
}

/**
 * The pool slot (page · pageSize + offset) of a cache's slot `slot`, through its page table.
 * @example poolSlot([7, 2], 17, 16) // 2 · 16 + 1 = 33
 */
export function poolSlot(pageTable: readonly number[], slot: number, pageSize: number): number {
  return pageTable[Math.floor(slot / pageSize)] * pageSize + (slot % pageSize);
}

/** What one KV page holds: `pageSize` tokens of `kvHeads` × `headDim` values of `elementBytes` each. */
export interface PageShape {
  pageSize: number;
  kvHeads: number;
  headDim: number;
  elementBytes: number;
}

/**
 * Bytes of one KV page: K and V of `pageSize` tokens of one layer.
 * @example pageBytes({ pageSize: 16, kvHeads: 8, headDim: 128, elementBytes: 2 }) // 65536
 */
export function pageBytes(page: PageShape): number {
  return 2 * page.pageSize * page.kvHeads * page.headDim * page.elementBytes;
}
