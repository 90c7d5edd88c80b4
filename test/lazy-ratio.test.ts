// Standalone lazy ratio against the float64 reference and against the fused form.
import { kernels, Tensor } from "../lib";
import { type FloatDType, firstMismatch, Random, referenceLazyRatio } from "./helpers/reference";
import { TensorScope } from "./helpers/tensors";

const rng = new Random();
const scope = new TensorScope();
afterEach(() => scope.dispose());

describe("lazyRatio (standalone, CPU)", () => {
  const cases: Array<{ n: number; hq: number; hkv: number; dtype: FloatDType; sink: number; window: number; lastQueries: number }> = [
    { n: 120, hq: 8, hkv: 1, dtype: "f32", sink: 4, window: 30, lastQueries: 16 }, // GQA 8
    { n: 90, hq: 8, hkv: 2, dtype: "bf16", sink: 4, window: 20, lastQueries: 32 }, // GQA 4
    { n: 45, hq: 3, hkv: 3, dtype: "f16", sink: 2, window: 40, lastQueries: 8 }, // N > S+W, GQA 1
    { n: 20, hq: 4, hkv: 4, dtype: "f32", sink: 4, window: 16, lastQueries: 32 }, // N = S+W < w_last
    { n: 9, hq: 4, hkv: 1, dtype: "bf16", sink: 4, window: 16, lastQueries: 32 }, // N < S+W
    { n: 64, hq: 2, hkv: 1, dtype: "f32", sink: 0, window: 3, lastQueries: 8 }, // last queries before the window
  ];
  test.each(cases)("N=$n S=$sink W=$window last=$lastQueries hq=$hq hkv=$hkv $dtype", (c) => {
    const q = scope.random(rng, [c.n, c.hq, 64], c.dtype);
    const k = scope.random(rng, [c.n, c.hkv, 64], c.dtype);
    const v = scope.random(rng, [c.n, c.hkv, 64], c.dtype);
    const spec = { sink: c.sink, window: c.window, lastQueries: c.lastQueries };
    const fused = kernels.prefillAttention({ q: q.tensor, k: k.tensor, v: v.tensor, returnLse: true, lazyRatio: spec });
    [fused.out, fused.lse, fused.lazyRatio].forEach((t) => scope.add(t));

    // Only the trailing queries and their LSE rows are passed: what a runtime keeps.
    const last = Math.min(c.n, c.lastQueries);
    const qTail = scope.add(
      Tensor.from(q.tensor.toArray().slice((c.n - last) * c.hq * 64) as Uint16Array, [last, c.hq, 64], { dtype: c.dtype }),
    );
    const lseTail = scope.add(Tensor.from(fused.lse!.toFloat32Array().slice((c.n - last) * c.hq), [last, c.hq]));
    const ratio = scope.add(kernels.lazyRatio({ q: qTail, k: k.tensor, lse: lseTail, ...spec }));
    const got = ratio.toFloat32Array();
    const want = referenceLazyRatio(q.values, k.values, { nq: c.n, nk: c.n, hq: c.hq, hkv: c.hkv, d: 64 }, 1 / 8, spec);
    const problem = firstMismatch(got, want, { rtol: 0, atol: 1e-5 });
    if (problem) throw new Error(`standalone vs reference: ${problem} (seed ${rng.seed})`);
    const vsFused = firstMismatch(got, fused.lazyRatio!.toFloat32Array(), { rtol: 0, atol: 1e-5 });
    if (vsFused) throw new Error(`standalone vs fused: ${vsFused} (seed ${rng.seed})`);
    for (const r of got) {
      expect(r).toBeGreaterThanOrEqual(0);
      expect(r).toBeLessThanOrEqual(1);
    }
    if (c.n <= c.sink + c.window) for (const r of got) expect(r).toBeCloseTo(1, 5);
  });

  test("attention concentrated on the sinks gives a ratio near 1; spread out, well below", () => {
    const n = 400,
      d = 64,
      hq = 2;
    const spec = { sink: 4, window: 16, lastQueries: 8 };
    // Keys 0..3 point along the queries; the rest are orthogonal noise of small size.
    const qv = new Float32Array(n * hq * d),
      kv = new Float32Array(n * d);
    for (let t = 0; t < n; t++) {
      for (let h = 0; h < hq; h++) qv[(t * hq + h) * d] = 4 + rng.next();
      kv[t * d] = t < 4 ? 40 : 0;
      for (let i = 1; i < d; i++) kv[t * d + i] = rng.normal() * 0.1;
    }
    const q = scope.add(Tensor.from(qv, [n, hq, d]));
    const k = scope.add(Tensor.from(kv, [n, 1, d]));
    const vT = scope.add(Tensor.from(rng.normals(n * d), [n, 1, d]));
    const sinkHeavy = kernels.prefillAttention({ q, k, v: vT, lazyRatio: spec });
    [sinkHeavy.out, sinkHeavy.lazyRatio].forEach((t) => scope.add(t));
    for (const r of sinkHeavy.lazyRatio!.toFloat32Array()) expect(r).toBeGreaterThan(0.95);

    const flatK = scope.add(Tensor.from(rng.normals(n * d, 0.05), [n, 1, d]));
    const spread = kernels.prefillAttention({ q, k: flatK, v: vT, lazyRatio: spec });
    [spread.out, spread.lazyRatio].forEach((t) => scope.add(t));
    // Nearly uniform attention over ~400 keys puts about 20/400 of the mass on sinks + window.
    for (const r of spread.lazyRatio!.toFloat32Array()) expect(r).toBeLessThan(0.2);
  });
});
