// CPU paged decode attention against the float64 reference, and ring decode against
// streaming prefill (DESIGN.md section 2).
import { kernels, Tensor } from "../lib";
import { gatherRows, ringSlot } from "./helpers/pages";
import { expectClose, type FloatDType, Random, referenceAttention, tolerance } from "./helpers/reference";
import { TensorScope } from "./helpers/tensors";

const rng = new Random();
const scope = new TensorScope();
afterEach(() => scope.dispose());

const check = (label: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: { rtol: number; atol: number }) =>
  expectClose(rng, label, got, want, tol);

describe("decodeAttention (CPU) matches the float64 reference", () => {
  const cases: Array<{ hq: number; hkv: number; d: number; pageSize: number; dtype: FloatDType; lens: number[] }> = [
    { hq: 4, hkv: 4, d: 64, pageSize: 16, dtype: "f32", lens: [1, 15, 16, 17, 100] },
    { hq: 8, hkv: 2, d: 128, pageSize: 16, dtype: "bf16", lens: [0, 33, 250] },
    { hq: 8, hkv: 1, d: 64, pageSize: 8, dtype: "f16", lens: [7, 8, 9, 64, 3] },
    { hq: 6, hkv: 3, d: 40, pageSize: 5, dtype: "f32", lens: [12, 1] },
    // Past one block of 4096 slots: the blocks' sums merged by their maxima.
    { hq: 4, hkv: 2, d: 32, pageSize: 16, dtype: "f32", lens: [9000, 4097] },
  ];
  test.each(cases)("hq=$hq hkv=$hkv d=$d pageSize=$pageSize $dtype lens=$lens", (c) => {
    const batch = c.lens.length;
    const pagesPer = c.lens.map((l) => Math.ceil(l / c.pageSize));
    const maxPages = Math.max(1, ...pagesPer);
    const numPages = pagesPer.reduce((a, b) => a + b, 0) + 3; // spare pages hold random junk
    const ids = rng.shuffle(Array.from({ length: numPages }, (_, i) => i));
    const tables = pagesPer.map((n) => ids.splice(0, n));
    const rowSize = c.hkv * c.d;
    const kPool = scope.random(rng, [numPages, c.pageSize, c.hkv, c.d], c.dtype);
    const vPool = scope.random(rng, [numPages, c.pageSize, c.hkv, c.d], c.dtype);
    const q = scope.random(rng, [batch, c.hq, c.d], c.dtype);
    const flatTable = tables.flatMap((t) => [...t, ...Array(maxPages - t.length).fill(-1)]);
    const pageTable = scope.ints(flatTable, [batch, maxPages]);
    const seqLens = scope.ints(c.lens);
    const res = kernels.decodeAttention({ q: q.tensor, kPages: kPool.tensor, vPages: vPool.tensor, pageTable, seqLens, returnLse: true });
    scope.add(res.out);
    scope.add(res.lse);
    const out = res.out.toFloat32Array();
    const lse = res.lse!.toFloat32Array();
    c.lens.forEach((len, b) => {
      const qRow = q.values.slice(b * c.hq * c.d, (b + 1) * c.hq * c.d);
      const rowsOut = out.slice(b * c.hq * c.d, (b + 1) * c.hq * c.d);
      if (len === 0) {
        expect(Array.from(rowsOut).every((x) => x === 0)).toBe(true);
        expect(Array.from(lse.slice(b * c.hq, (b + 1) * c.hq)).every((x) => x === -Infinity)).toBe(true);
        return;
      }
      const k = gatherRows(kPool.values, tables[b], len, c.pageSize, rowSize);
      const v = gatherRows(vPool.values, tables[b], len, c.pageSize, rowSize);
      const ref = referenceAttention(qRow, k, v, { nq: 1, nk: len, hq: c.hq, hkv: c.hkv, d: c.d }, 1 / Math.sqrt(c.d));
      check(`out of sequence ${b}`, rowsOut, ref.out, tolerance(c.dtype));
      check(`lse of sequence ${b}`, lse.slice(b * c.hq, (b + 1) * c.hq), ref.lse, { rtol: 1e-5, atol: 1e-5 });
    });
  });
});

describe("ring decode equals streaming prefill", () => {
  test.each([
    { sink: 4, window: 16, pageSize: 16, n: 60 },
    { sink: 0, window: 9, pageSize: 4, n: 30 },
    { sink: 3, window: 1, pageSize: 2, n: 12 },
  ])("sink=$sink window=$window pageSize=$pageSize", ({ sink, window, pageSize, n }) => {
    const hq = 4,
      hkv = 2,
      d = 64;
    const q = scope.random(rng, [n, hq, d], "f32");
    const k = scope.random(rng, [n, hkv, d], "f32");
    const v = scope.random(rng, [n, hkv, d], "f32");
    const prefill = kernels.prefillAttention({ q: q.tensor, k: k.tensor, v: v.tensor, streaming: { sink, window } });
    scope.add(prefill.out);
    const want = prefill.out.toFloat32Array();

    const ringPages = Math.ceil((sink + window) / pageSize);
    const numPages = ringPages + 4;
    const table = rng.shuffle(Array.from({ length: numPages }, (_, i) => i)).slice(0, ringPages);
    const kPages = scope.random(rng, [numPages, pageSize, hkv, d], "f32").tensor;
    const vPages = scope.random(rng, [numPages, pageSize, hkv, d], "f32").tensor;
    const pageTable = scope.ints(table, [1, ringPages]);
    const kAll = k.tensor.toFloat32Array(),
      vAll = v.tensor.toFloat32Array(),
      qAll = q.tensor.toFloat32Array();
    const rowSize = hkv * d;
    for (let p = 0; p < n; p++) {
      const slot = ringSlot(p, sink, window);
      const poolSlot = table[Math.floor(slot / pageSize)] * pageSize + (slot % pageSize);
      const kRow = scope.add(Tensor.from(kAll.slice(p * rowSize, (p + 1) * rowSize), [1, hkv, d]));
      const vRow = scope.add(Tensor.from(vAll.slice(p * rowSize, (p + 1) * rowSize), [1, hkv, d]));
      kernels.appendKv({ k: kRow, v: vRow, kPages, vPages, slots: scope.ints([poolSlot]) });
      const qRow = scope.add(Tensor.from(qAll.slice(p * hq * d, (p + 1) * hq * d), [1, hq, d]));
      const seqLens = scope.ints([Math.min(p + 1, sink + window)]);
      const { out } = kernels.decodeAttention({ q: qRow, kPages, vPages, pageTable, seqLens });
      scope.add(out);
      check(`decode at position ${p}`, out.toFloat32Array(), want.slice(p * hq * d, (p + 1) * hq * d), { rtol: 1e-5, atol: 1e-5 });
    }
  });
});
