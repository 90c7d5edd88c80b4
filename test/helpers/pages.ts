// Page-pool helpers for the tests: the ring rule and plain-JS gathers, independent of the kernels.
export function ringSlot(pos: number, sink: number, window: number): number {
  return pos < sink ? pos : sink + ((pos - sink) % window);
}

/** Pool slot (page * pageSize + offset) of logical slot `s` of a cache whose pages are `table`. */
export function poolSlot(table: number[], s: number, pageSize: number): number {
  return table[Math.floor(s / pageSize)] * pageSize + (s % pageSize);
}

/** Rows [len, hkv, d] of a cache gathered from a pool's values. */
export function gatherRows(pool: ArrayLike<number>, table: number[], len: number, pageSize: number, rowSize: number): Float64Array {
  const out = new Float64Array(len * rowSize);
  for (let s = 0; s < len; s++) {
    const base = poolSlot(table, s, pageSize) * rowSize;
    for (let i = 0; i < rowSize; i++) out[s * rowSize + i] = pool[base + i];
  }
  return out;
}

/** How a layer cache lays positions on its slots: a full cache, or a streaming ring. */
export interface CacheLayout {
  pageSize: number;
  ring?: { sink: number; window: number };
}

/** Slots a cache of `length` positions occupies. */
export function slotsUsed(length: number, layout: CacheLayout): number {
  return layout.ring ? Math.min(length, layout.ring.sink + layout.ring.window) : length;
}

/** A page table for `slots` slots on pages shuffled through a pool with `spare` pages no cache uses. */
export function scatteredPages(
  shuffle: <T>(items: T[]) => T[],
  slots: number,
  pageSize: number,
  spare: number,
): { table: number[]; numPages: number } {
  const pages = Math.ceil(slots / pageSize);
  const numPages = pages + spare;
  return { table: shuffle(Array.from({ length: numPages }, (_, i) => i)).slice(0, pages), numPages };
}

/**
 * Pool values [numPages, pageSize, rowSize] after writing rows of positions [0, length) in order
 * through `layout` (a ring's later positions overwrite earlier ones), like appendKv would; every
 * slot no position was written to holds NaN, so a kernel that reads one cannot pass.
 */
export function writeThroughPages(
  rows: ArrayLike<number>,
  length: number,
  rowSize: number,
  table: number[],
  numPages: number,
  layout: CacheLayout,
): Float32Array {
  const pool = new Float32Array(numPages * layout.pageSize * rowSize).fill(NaN);
  for (let p = 0; p < length; p++) {
    const s = layout.ring ? ringSlot(p, layout.ring.sink, layout.ring.window) : p;
    pool.set(Array.prototype.slice.call(rows, p * rowSize, (p + 1) * rowSize), poolSlot(table, s, layout.pageSize) * rowSize);
  }
  return pool;
}
