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
