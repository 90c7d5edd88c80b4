// Prefill attention over a cached prefix read through a page table (CPU), against the float64
// reference reading the same pool by the cache layout's definition, and against the contiguous
// form of the same call.
import { kernels, Tensor } from "../lib";
import { type CacheLayout, scatteredPages, slotsUsed, writeThroughPages } from "./helpers/pages";
import {
  expectClose,
  type FloatDType,
  type Mask,
  Random,
  referenceAttention,
  referenceLazyRatio,
  roundArray,
  rowsThroughPages,
  tolerance,
} from "./helpers/reference";
import { TensorScope } from "./helpers/tensors";

const rng = new Random();
const scope = new TensorScope();
afterEach(() => scope.dispose());

interface PagedCase {
  /** Cached positions; the call's queries and own keys follow. */
  start: number;
  /** Own keys (the chunk's tokens). */
  own: number;
  /** Queries: the last nq positions of start + own. */
  nq: number;
  hq: number;
  hkv: number;
  d: number;
  dtype: FloatDType;
  pageSize: number;
  ring?: Mask;
  ratio?: { sink: number; window: number; lastQueries: number };
}

function runPaged(c: PagedCase) {
  const nk = c.start + c.own,
    rowSize = c.hkv * c.d;
  const layout: CacheLayout = { pageSize: c.pageSize, ring: c.ring };
  const { table, numPages } = scatteredPages((items) => rng.shuffle(items), Math.max(slotsUsed(c.start, layout), 1), c.pageSize, 3);
  const keys = rng.normals(nk * rowSize),
    values = rng.normals(nk * rowSize);
  const poolOf = (rows: Float32Array) => writeThroughPages(rows, c.start, rowSize, table, numPages, layout);
  const kPool = poolOf(keys),
    vPool = poolOf(values);
  const tensor = (data: Float32Array, shape: number[]) => scope.add(Tensor.from(data, shape, { dtype: c.dtype }));
  const poolShape = [numPages, c.pageSize, c.hkv, c.d];
  const ownK = keys.slice(c.start * rowSize),
    ownV = values.slice(c.start * rowSize);
  const qRaw = rng.normals(c.nq * c.hq * c.d);
  const q = tensor(qRaw, [c.nq, c.hq, c.d]);
  const cached = {
    kPages: tensor(kPool, poolShape),
    vPages: tensor(vPool, poolShape),
    pageTable: scope.ints(table),
    length: c.start,
    ring: c.ring,
  };
  const own = c.own > 0 ? { k: tensor(ownK, [c.own, c.hkv, c.d]), v: tensor(ownV, [c.own, c.hkv, c.d]) } : {};
  const res = kernels.prefillAttention({ q, ...own, cached, streaming: c.ring, returnLse: true, lazyRatio: c.ratio });
  [res.out, res.lse, res.lazyRatio].forEach((t) => scope.add(t));

  const shape = { nq: c.nq, nk, hq: c.hq, hkv: c.hkv, d: c.d };
  const round = (a: Float32Array) => roundArray(c.dtype, a);
  const refK = rowsThroughPages(round(kPool), table, c.pageSize, c.start, rowSize, c.ring, round(ownK));
  const refV = rowsThroughPages(round(vPool), table, c.pageSize, c.start, rowSize, c.ring, round(ownV));
  const scale = 1 / Math.sqrt(c.d);
  const ref = referenceAttention(round(qRaw), refK, refV, shape, scale, c.ring);
  expectClose(rng, "out", res.out.toFloat32Array(), ref.out, tolerance(c.dtype));
  expectClose(rng, "lse", res.lse!.toFloat32Array(), ref.lse, { rtol: 1e-5, atol: 1e-5 });
  if (c.ratio) {
    const want = referenceLazyRatio(round(qRaw), refK, shape, scale, c.ratio, c.ring);
    expectClose(rng, "lazy ratio", res.lazyRatio!.toFloat32Array(), want, { rtol: 0, atol: 2e-6 });
  }

  // The contiguous form over all keys by position computes the same sums in the same order.
  const whole = kernels.prefillAttention({
    q,
    k: tensor(keys, [nk, c.hkv, c.d]),
    v: tensor(values, [nk, c.hkv, c.d]),
    streaming: c.ring,
    returnLse: true,
    lazyRatio: c.ratio,
  });
  [whole.out, whole.lse, whole.lazyRatio].forEach((t) => scope.add(t));
  expect(Array.from(res.out.toArray())).toEqual(Array.from(whole.out.toArray()));
  expect(Array.from(res.lse!.toArray())).toEqual(Array.from(whole.lse!.toArray()));
  if (c.ratio) expect(Array.from(res.lazyRatio!.toArray())).toEqual(Array.from(whole.lazyRatio!.toArray()));
}

describe("prefillAttention over a full cache read through its pages matches the float64 reference", () => {
  const cases: PagedCase[] = [
    { start: 1, own: 5, nq: 5, hq: 2, hkv: 1, d: 16, dtype: "f32", pageSize: 4 },
    { start: 16, own: 16, nq: 16, hq: 8, hkv: 2, d: 64, dtype: "bf16", pageSize: 16 }, // a page boundary at the chunk
    { start: 37, own: 9, nq: 9, hq: 4, hkv: 1, d: 32, dtype: "f16", pageSize: 8 },
    { start: 130, own: 3, nq: 3, hq: 8, hkv: 8, d: 128, dtype: "f32", pageSize: 16 },
    { start: 23, own: 11, nq: 7, hq: 6, hkv: 3, d: 24, dtype: "bf16", pageSize: 5 }, // fewer queries than own keys
    { start: 0, own: 6, nq: 6, hq: 4, hkv: 2, d: 16, dtype: "f32", pageSize: 4 }, // an empty prefix
    { start: 50, own: 0, nq: 12, hq: 4, hkv: 2, d: 32, dtype: "f32", pageSize: 8 }, // every key cached
  ];
  test.each(cases)("start=$start own=$own nq=$nq hq=$hq hkv=$hkv d=$d $dtype pageSize=$pageSize", (c) => runPaged(c));
});

describe("prefillAttention over a streaming ring read through its pages matches the float64 reference", () => {
  const ring = { sink: 4, window: 16 };
  const cases: PagedCase[] = [
    { start: 2, own: 7, nq: 7, hq: 4, hkv: 1, d: 32, dtype: "f32", pageSize: 8, ring }, // inside the sinks
    { start: 15, own: 10, nq: 10, hq: 4, hkv: 2, d: 32, dtype: "bf16", pageSize: 8, ring }, // fills the ring during the chunk
    { start: 20, own: 5, nq: 5, hq: 8, hkv: 2, d: 64, dtype: "f16", pageSize: 8, ring }, // a full ring
    { start: 77, own: 30, nq: 30, hq: 4, hkv: 1, d: 32, dtype: "f32", pageSize: 8, ring }, // wrapped; the chunk outruns the window
    { start: 61, own: 9, nq: 9, hq: 8, hkv: 8, d: 16, dtype: "bf16", pageSize: 3, ring: { sink: 0, window: 7 } }, // no sinks
    { start: 25, own: 4, nq: 4, hq: 2, hkv: 2, d: 16, dtype: "f32", pageSize: 2, ring: { sink: 3, window: 1 } }, // sinks + self
  ];
  test.each(cases)("start=$start own=$own sink=$ring.sink window=$ring.window hq=$hq hkv=$hkv $dtype", (c) => runPaged(c));
});

describe("the fused lazy ratio over a paged prefix counts absolute key positions", () => {
  const spec = { sink: 4, window: 20, lastQueries: 32 };
  const cases: PagedCase[] = [
    { start: 60, own: 40, nq: 40, hq: 8, hkv: 2, d: 32, dtype: "f32", pageSize: 16, ratio: spec },
    { start: 90, own: 33, nq: 33, hq: 4, hkv: 1, d: 32, dtype: "bf16", pageSize: 8, ring: { sink: 4, window: 24 }, ratio: spec },
    { start: 70, own: 0, nq: 16, hq: 4, hkv: 2, d: 32, dtype: "f32", pageSize: 8, ratio: { sink: 2, window: 10, lastQueries: 16 } }, // queries of a cached sequence
    { start: 10, own: 40, nq: 40, hq: 4, hkv: 4, d: 16, dtype: "f16", pageSize: 4, ratio: spec }, // Last reaches into no prefix
  ];
  test.each(cases)("start=$start own=$own nq=$nq hq=$hq hkv=$hkv $dtype", (c) => runPaged(c));
});
