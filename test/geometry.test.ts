// Page and ring arithmetic of lib/common/geometry.ts: fixed cases at the page boundaries, the
// ring rule checked against its defining properties, and agreement with what the caches allocate.
import fc from "fast-check";
import { FullCache, StreamingCache } from "../lib/cache/layer-cache";
import { PagePool } from "../lib/cache/page-pool";
import {
  defaultPageSize,
  fullCachePages,
  heldSlots,
  pageBytes,
  pagesAfterAppend,
  poolSlot,
  ringPages,
  ringSize,
  ringSlot,
  streamingDefaults,
} from "../lib/common/geometry";
import { resolveHybrid } from "../lib/hybrid/options";
import { planMemory } from "../lib/hybrid/planner";

const ring = fc.record({ sink: fc.integer({ min: 0, max: 40 }), window: fc.integer({ min: 1, max: 80 }) });
const pageSize = fc.integer({ min: 1, max: 33 });

describe("defaults", () => {
  test("the paper's shape and page size, frozen", () => {
    expect(streamingDefaults).toEqual({ sink: 4, window: 1020, lastQueries: 32 });
    expect(Object.isFrozen(streamingDefaults)).toBe(true);
    expect(defaultPageSize).toBe(16);
    expect(ringSize(streamingDefaults)).toBe(1024);
  });
  test("the hybrid option and the planner settle on them", () => {
    const resolved = resolveHybrid({ mode: "auto" }, 4);
    expect({ sink: resolved.sink, window: resolved.window, lastQueries: resolved.lastQueries }).toEqual(streamingDefaults);
    const config = { layers: 2, kvHeads: 2, headDim: 8 } as Parameters<typeof planMemory>[0];
    const implicit = planMemory(config, { context: 5000, memoryBytes: 2 ** 30, weightBytes: 0, fullLayers: 1 });
    const explicit = planMemory(config, {
      context: 5000,
      memoryBytes: 2 ** 30,
      weightBytes: 0,
      fullLayers: 1,
      ...streamingDefaults,
      pageSize: 16,
    });
    expect(implicit).toEqual(explicit);
    expect(implicit.hybrid?.pages).toBe(Math.ceil(5000 / 16) + 1024 / 16);
  });
});

describe("a full cache", () => {
  test.each([
    [0, 16, 0],
    [1, 16, 1],
    [15, 16, 1],
    [16, 16, 1],
    [17, 16, 2],
    [32, 16, 2],
    [33, 16, 3],
    [7, 1, 7],
  ])("%i tokens at page size %i take %i pages", (tokens, size, pages) => {
    expect(fullCachePages(tokens, size)).toBe(pages);
  });
  test("holds the fewest pages that fit every token", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 5000 }), pageSize, (tokens, size) => {
        const pages = fullCachePages(tokens, size);
        expect(pages * size).toBeGreaterThanOrEqual(tokens);
        expect((pages - 1) * size).toBeLessThan(Math.max(tokens, 1));
      }),
    );
  });
});

describe("a ring", () => {
  test("keeps the sinks and sends position p + window to the slot of p", () => {
    fc.assert(
      fc.property(ring, fc.integer({ min: 0, max: 1000 }), (r, p) => {
        const slot = ringSlot(r, p);
        expect(slot).toBeGreaterThanOrEqual(0);
        expect(slot).toBeLessThan(ringSize(r));
        if (p < r.sink) expect(slot).toBe(p);
        else expect(ringSlot(r, p + r.window)).toBe(slot);
      }),
    );
  });
  test("gives the last window positions distinct non-sink slots", () => {
    fc.assert(
      fc.property(ring, fc.integer({ min: 1, max: 1000 }), (r, length) => {
        const recent = Array.from({ length: Math.min(r.window, Math.max(0, length - r.sink)) }, (_, i) => length - 1 - i);
        const slots = recent.map((p) => ringSlot(r, p));
        expect(new Set(slots).size).toBe(slots.length);
        for (const s of slots) expect(s).toBeGreaterThanOrEqual(r.sink);
      }),
    );
  });
  test.each([
    [{ sink: 4, window: 1020 }, 5000, 16, 64],
    [{ sink: 4, window: 1020 }, 1024, 16, 64],
    [{ sink: 4, window: 1020 }, 100, 16, 7],
    [{ sink: 0, window: 5 }, 3, 4, 1],
    [{ sink: 0, window: 5 }, 9, 4, 2],
    [{ sink: 3, window: 3 }, 1000, 4, 2],
  ])("%o after %i tokens at page size %i holds %i pages", (r, tokens, size, pages) => {
    expect(ringPages(tokens, r, size)).toBe(pages);
  });
  test("grows like a full cache until it is full, then stays", () => {
    fc.assert(
      fc.property(ring, pageSize, fc.integer({ min: 0, max: 1000 }), (r, size, tokens) => {
        expect(heldSlots(tokens, r)).toBe(Math.min(tokens, ringSize(r)));
        expect(ringPages(tokens, r, size)).toBe(fullCachePages(Math.min(tokens, ringSize(r)), size));
        expect(ringPages(tokens, r, size)).toBeLessThanOrEqual(fullCachePages(tokens, size));
      }),
    );
  });
});

describe("appending", () => {
  test.each([
    [{ pages: 1, length: 15, count: 1, pageSize: 16 }, 1],
    [{ pages: 1, length: 16, count: 1, pageSize: 16 }, 2],
    [{ pages: 1, length: 1, count: 47, pageSize: 16 }, 3],
    [{ pages: 1, length: 1, count: 48, pageSize: 16 }, 4],
    [{ pages: 0, length: 0, count: 0, pageSize: 16 }, 0],
    [{ pages: 3, length: 10, count: 1, pageSize: 16 }, 3],
    [{ pages: 2, length: 8, count: 100, pageSize: 4, ring: { sink: 2, window: 9 } }, 3],
    [{ pages: 3, length: 11, count: 1, pageSize: 4, ring: { sink: 2, window: 9 } }, 3],
  ])("%o holds %i pages", (o, pages) => {
    expect(pagesAfterAppend(o)).toBe(pages);
  });

  // The caches allocate a page when a slot first lands on it; the arithmetic must predict that.
  test("predicts the pages a full or streaming cache really holds, chunk after chunk", () => {
    fc.assert(
      fc.property(
        fc.option(ring, { nil: undefined }),
        fc.integer({ min: 1, max: 9 }),
        fc.array(fc.integer({ min: 0, max: 40 }), { minLength: 1, maxLength: 12 }),
        (r, size, chunks) => {
          const pool = new PagePool({ numPages: 512, pageSize: size, kvHeads: 1, headDim: 2, dtype: "f32", device: "cpu" });
          try {
            const cache = r ? new StreamingCache(pool, r.sink, r.window) : new FullCache(pool);
            for (const count of chunks) {
              const predicted = pagesAfterAppend({ pages: cache.pageTable.length, length: cache.length, count, pageSize: size, ring: r });
              expect(cache.pageCountAfter(count)).toBe(predicted);
              const slots = cache.reserve(count).filter((s) => s >= 0);
              expect(cache.pageTable.length).toBe(predicted);
              expect(cache.pageTable.length).toBe(r ? ringPages(cache.length, r, size) : fullCachePages(cache.length, size));
              for (const s of slots) expect(cache.pageTable).toContain(Math.floor(s / size));
            }
            cache.release();
          } finally {
            pool.dispose();
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe("pool slots and page bytes", () => {
  test("a slot goes to its page's entry in the table, at its offset", () => {
    expect(poolSlot([7, 2], 0, 16)).toBe(112);
    expect(poolSlot([7, 2], 15, 16)).toBe(127);
    expect(poolSlot([7, 2], 17, 16)).toBe(33);
  });
  test.each(["f32", "bf16", "f16"] as const)("a page's bytes are those of its K and V rows in the pool (%s)", (dtype) => {
    const shape = { pageSize: 4, kvHeads: 3, headDim: 8 };
    const pool = new PagePool({ numPages: 5, ...shape, dtype, device: "cpu" });
    try {
      expect(pool.pageBytes).toBe((pool.kPages.bytes + pool.vPages.bytes) / pool.numPages);
      expect(pageBytes({ ...shape, elementBytes: dtype === "f32" ? 4 : 2 })).toBe(pool.pageBytes);
    } finally {
      pool.dispose();
    }
  });
});
