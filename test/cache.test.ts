// CPU cache operations, checked bit for bit against plain-JS gathers.
import { kernels, Tensor } from "../lib";
import { FullCache, StreamingCache } from "../lib/cache/layer-cache";
import { PagePool } from "../lib/cache/page-pool";
import { poolSlot, ringSlot } from "./helpers/pages";
import { firstMismatch, Random } from "./helpers/reference";
import { TensorScope } from "./helpers/tensors";

const rng = new Random();
const scope = new TensorScope();
afterEach(() => scope.dispose());

test.each(["f32", "bf16", "f16"] as const)("appendKv writes each token's rows to its slot (%s)", (dtype) => {
  const numPages = 6,
    pageSize = 4,
    hkv = 2,
    d = 8,
    tokens = 9;
  const rowSize = hkv * d;
  const kPages = scope.random(rng, [numPages, pageSize, hkv, d], dtype).tensor;
  const vPages = scope.random(rng, [numPages, pageSize, hkv, d], dtype).tensor;
  const before = { k: Array.from(kPages.toArray()), v: Array.from(vPages.toArray()) };
  const k = scope.random(rng, [tokens, hkv, d], dtype).tensor;
  const v = scope.random(rng, [tokens, hkv, d], dtype).tensor;
  const slots = rng.shuffle(Array.from({ length: numPages * pageSize }, (_, i) => i)).slice(0, tokens);
  slots[rng.int(0, tokens - 1)] = -1; // a dropped token writes nothing
  kernels.appendKv({ k, v, kPages, vPages, slots: scope.ints(slots) });
  const kBits = Array.from(k.toArray()),
    vBits = Array.from(v.toArray());
  slots.forEach((s, t) => {
    if (s < 0) return;
    for (let i = 0; i < rowSize; i++) {
      before.k[s * rowSize + i] = kBits[t * rowSize + i];
      before.v[s * rowSize + i] = vBits[t * rowSize + i];
    }
  });
  expect(Array.from(kPages.toArray())).toEqual(before.k);
  expect(Array.from(vPages.toArray())).toEqual(before.v);
});

describe("cutToStreaming", () => {
  test.each([
    { length: 10, sink: 4, window: 16, overlap: true }, // below S + W: identity placement
    { length: 20, sink: 4, window: 16, overlap: true }, // at S + W
    { length: 21, sink: 4, window: 16, overlap: true }, // one past
    { length: 77, sink: 4, window: 16, overlap: true }, // well above, ring reuses the first pages
    { length: 77, sink: 4, window: 16, overlap: false },
    { length: 50, sink: 0, window: 13, overlap: true },
    { length: 3, sink: 5, window: 2, overlap: false }, // shorter than the sinks
  ])("length=$length sink=$sink window=$window overlapping=$overlap", ({ length, sink, window, overlap }) => {
    const pageSize = 4,
      hkv = 2,
      d = 8,
      rowSize = hkv * d;
    const srcCount = Math.ceil(length / pageSize);
    const ringLen = Math.min(length, sink + window);
    const dstCount = Math.ceil(ringLen / pageSize);
    const numPages = srcCount + dstCount + 2;
    const ids = rng.shuffle(Array.from({ length: numPages }, (_, i) => i));
    const src = ids.slice(0, srcCount);
    // Overlapping: the ring takes the full cache's pages in a shuffled order, so rows move across pages.
    const dst = overlap ? rng.shuffle(src.slice()).slice(0, dstCount) : ids.slice(srcCount, srcCount + dstCount);
    const kPages = scope.random(rng, [numPages, pageSize, hkv, d], "bf16").tensor;
    const vPages = scope.random(rng, [numPages, pageSize, hkv, d], "bf16").tensor;
    const k0 = Array.from(kPages.toArray()),
      v0 = Array.from(vPages.toArray());
    kernels.cutToStreaming({
      kPages,
      vPages,
      srcPageTable: scope.ints(src),
      dstPageTable: scope.ints(dst),
      length,
      sink,
      window,
    });
    const expectK = k0.slice(),
      expectV = v0.slice();
    for (let p = 0; p < length; p++) {
      if (p >= sink && p < length - window) continue; // dropped: neither sink nor recent
      const from = poolSlot(src, p, pageSize) * rowSize;
      const to = poolSlot(dst, ringSlot(p, sink, window), pageSize) * rowSize;
      for (let i = 0; i < rowSize; i++) {
        expectK[to + i] = k0[from + i];
        expectV[to + i] = v0[from + i];
      }
    }
    const problem = firstMismatch(Array.from(kPages.toArray()), expectK, { rtol: 0, atol: 0 });
    if (problem) throw new Error(`K: ${problem} (seed ${rng.seed})`);
    expect(Array.from(vPages.toArray())).toEqual(expectV);
  });

  test.each([
    [2 ** 31 - 1, 7],
    [1, 2 ** 31 - 1],
  ])("an empty cache cut with sink %i and window %i (a 'no limit' value) changes nothing", (sink, window) => {
    const kPages = scope.random(rng, [3, 4, 2, 8], "f32").tensor,
      vPages = scope.random(rng, [3, 4, 2, 8], "f32").tensor;
    const k0 = Array.from(kPages.toArray()),
      v0 = Array.from(vPages.toArray());
    const tables = { srcPageTable: scope.ints([1]), dstPageTable: scope.ints([2]) };
    kernels.cutToStreaming({ kPages, vPages, ...tables, length: 0, sink, window });
    expect(Array.from(kPages.toArray())).toEqual(k0);
    expect(Array.from(vPages.toArray())).toEqual(v0);
  });

  test("cut then ring decode equals prefill with the streaming mask, then keeps decoding", () => {
    const sink = 4,
      window = 12,
      pageSize = 4,
      hq = 4,
      hkv = 1,
      d = 64,
      n = 70,
      prompt = 50;
    const q = scope.random(rng, [n, hq, d], "f32");
    const k = scope.random(rng, [n, hkv, d], "f32");
    const v = scope.random(rng, [n, hkv, d], "f32");
    const streamed = kernels.prefillAttention({ q: q.tensor, k: k.tensor, v: v.tensor, streaming: { sink, window } });
    scope.add(streamed.out);
    const want = streamed.out.toFloat32Array();

    // Full cache of the prompt on pages 0.., then cut it into a ring on its own first pages.
    const numPages = Math.ceil(n / pageSize) + 1;
    const kPages = scope.random(rng, [numPages, pageSize, hkv, d], "f32").tensor;
    const vPages = scope.random(rng, [numPages, pageSize, hkv, d], "f32").tensor;
    const full = Array.from({ length: Math.ceil(prompt / pageSize) }, (_, i) => i);
    const kAll = k.tensor.toFloat32Array(),
      vAll = v.tensor.toFloat32Array(),
      qAll = q.tensor.toFloat32Array();
    const rowSize = hkv * d;
    const slots = Array.from({ length: prompt }, (_, p) => poolSlot(full, p, pageSize));
    kernels.appendKv({
      k: scope.add(Tensor.from(kAll.slice(0, prompt * rowSize), [prompt, hkv, d])),
      v: scope.add(Tensor.from(vAll.slice(0, prompt * rowSize), [prompt, hkv, d])),
      kPages,
      vPages,
      slots: scope.ints(slots),
    });
    const ring = full.slice(0, Math.ceil((sink + window) / pageSize));
    kernels.cutToStreaming({
      kPages,
      vPages,
      srcPageTable: scope.ints(full),
      dstPageTable: scope.ints(ring),
      length: prompt,
      sink,
      window,
    });
    const pageTable = scope.ints(ring, [1, ring.length]);
    const seqLens = scope.ints([sink + window]);
    for (let p = prompt; p < n; p++) {
      const slot = poolSlot(ring, ringSlot(p, sink, window), pageSize);
      kernels.appendKv({
        k: scope.add(Tensor.from(kAll.slice(p * rowSize, (p + 1) * rowSize), [1, hkv, d])),
        v: scope.add(Tensor.from(vAll.slice(p * rowSize, (p + 1) * rowSize), [1, hkv, d])),
        kPages,
        vPages,
        slots: scope.ints([slot]),
      });
      const qRow = scope.add(Tensor.from(qAll.slice(p * hq * d, (p + 1) * hq * d), [1, hq, d]));
      const { out } = kernels.decodeAttention({ q: qRow, kPages, vPages, pageTable, seqLens });
      scope.add(out);
      const problem = firstMismatch(out.toFloat32Array(), want.slice(p * hq * d, (p + 1) * hq * d), { rtol: 1e-5, atol: 1e-5 });
      if (problem) throw new Error(`position ${p}: ${problem} (seed ${rng.seed})`);
    }
  });
});

test.each(["f32", "bf16"] as const)("gatherKv copies pool slots out in the order given (%s)", (dtype) => {
  const numPages = 7,
    pageSize = 4,
    hkv = 3,
    d = 5,
    length = 17,
    rowSize = hkv * d;
  const kPages = scope.random(rng, [numPages, pageSize, hkv, d], dtype).tensor;
  const vPages = scope.random(rng, [numPages, pageSize, hkv, d], dtype).tensor;
  const table = rng.shuffle(Array.from({ length: numPages }, (_, i) => i)).slice(0, Math.ceil(length / pageSize));
  const slots = rng.shuffle(Array.from({ length }, (_, t) => poolSlot(table, t, pageSize)));
  const { k, v } = kernels.gatherKv({ kPages, vPages, slots: scope.ints(slots) });
  scope.add(k);
  scope.add(v);
  const k0 = Array.from(kPages.toArray()),
    v0 = Array.from(vPages.toArray());
  const wantK: number[] = [],
    wantV: number[] = [];
  for (let t = 0; t < length; t++) {
    const base = slots[t] * rowSize;
    wantK.push(...k0.slice(base, base + rowSize));
    wantV.push(...v0.slice(base, base + rowSize));
  }
  expect(Array.from(k.toArray())).toEqual(wantK);
  expect(Array.from(v.toArray())).toEqual(wantV);
  expect(() => kernels.gatherKv({ kPages, vPages, slots: scope.ints([0, 28]) })).toThrow(
    /slots\[1\] = 28 is outside the pool's slots 0..27/,
  );
});

test.each(["full", "streaming"] as const)("reserveOne is reserve(1), and pageCountAfter foretells the table (%s cache)", (kind) => {
  // One pool each, so both caches are handed the same pages.
  const pools = [0, 1].map(() => new PagePool({ numPages: 64, pageSize: 4, kvHeads: 1, headDim: 2, dtype: "f32", device: "cpu" }));
  const sink = rng.int(0, 3),
    window = rng.int(1, 20);
  const make = (pool: PagePool) => (kind === "full" ? new FullCache(pool) : new StreamingCache(pool, sink, window));
  const one = make(pools[0]),
    many = make(pools[1]);
  try {
    for (let step = 0; step < 60; step++) {
      const count = rng.int(1, 3);
      expect(one.pageCountAfter(count)).toBe(Math.max(one.pageTable.length, pagesAfter(one, count)));
      for (let i = 0; i < count; i++) {
        const predicted = one.pageCountAfter(1);
        const slot = one.reserveOne();
        expect(one.pageTable.length).toBe(predicted);
        expect(slot).toBe(many.reserve(1)[0]);
      }
    }
  } finally {
    one.release();
    many.release();
    for (const pool of pools) pool.dispose();
  }
});

/** Pages a cache holds after `count` more tokens, from its definition (DESIGN.md section 2). */
function pagesAfter(cache: FullCache | StreamingCache, count: number): number {
  const slotsUsed = cache instanceof StreamingCache ? Math.min(cache.length + count, cache.sink + cache.window) : cache.length + count;
  return Math.ceil(slotsUsed / 4);
}
