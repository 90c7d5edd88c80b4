// CPU prefill attention against the float64 reference written in test/helpers/reference.ts.
import { kernels, Tensor } from "../lib";
import {
  type AttentionShape,
  expectClose,
  type FloatDType,
  type Mask,
  Random,
  referenceAttention,
  referenceLazyRatio,
  tolerance,
} from "./helpers/reference";
import { TensorScope } from "./helpers/tensors";

const rng = new Random();
const scope = new TensorScope();
afterEach(() => scope.dispose());

const check = (label: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: { rtol: number; atol: number }) =>
  expectClose(rng, label, got, want, tol);

interface Case extends AttentionShape {
  dtype: FloatDType;
  mask?: Mask;
}

function runCase(c: Case) {
  const q = scope.random(rng, [c.nq, c.hq, c.d], c.dtype);
  const k = scope.random(rng, [c.nk, c.hkv, c.d], c.dtype);
  const v = scope.random(rng, [c.nk, c.hkv, c.d], c.dtype);
  const scale = 1 / Math.sqrt(c.d);
  const res = kernels.prefillAttention({ q: q.tensor, k: k.tensor, v: v.tensor, returnLse: true, streaming: c.mask });
  scope.add(res.out);
  scope.add(res.lse);
  const ref = referenceAttention(q.values, k.values, v.values, c, scale, c.mask);
  check("out", res.out.toFloat32Array(), ref.out, tolerance(c.dtype));
  check("lse", res.lse!.toFloat32Array(), ref.lse, { rtol: 1e-5, atol: 1e-5 });
  return { q, k, v, res };
}

describe("prefillAttention (CPU) matches the float64 reference", () => {
  const cases: Case[] = [
    { nq: 1, nk: 1, hq: 1, hkv: 1, d: 64, dtype: "f32" },
    { nq: 7, nk: 7, hq: 3, hkv: 3, d: 64, dtype: "f32" },
    { nq: 33, nk: 33, hq: 8, hkv: 2, d: 128, dtype: "bf16" },
    { nq: 65, nk: 65, hq: 8, hkv: 1, d: 64, dtype: "f16" },
    { nq: 19, nk: 19, hq: 4, hkv: 4, d: 40, dtype: "bf16" },
    { nq: 5, nk: 130, hq: 8, hkv: 2, d: 64, dtype: "f32" }, // a later chunk of a long prompt
    { nq: 1, nk: 77, hq: 4, hkv: 1, d: 128, dtype: "f16" },
    { nq: 50, nk: 50, hq: 2, hkv: 1, d: 256, dtype: "bf16" },
  ];
  test.each(cases)("nq=$nq nk=$nk hq=$hq hkv=$hkv d=$d $dtype", (c) => {
    runCase(c);
  });

  // Streaming mask, lengths below, at and above sink + window.
  const streaming: Case[] = [
    { nq: 10, nk: 10, hq: 4, hkv: 1, d: 64, dtype: "f32", mask: { sink: 4, window: 16 } }, // N < S + W
    { nq: 20, nk: 20, hq: 4, hkv: 1, d: 64, dtype: "f32", mask: { sink: 4, window: 16 } }, // N = S + W
    { nq: 90, nk: 90, hq: 8, hkv: 2, d: 64, dtype: "bf16", mask: { sink: 4, window: 16 } }, // N > S + W
    { nq: 61, nk: 61, hq: 8, hkv: 8, d: 128, dtype: "f16", mask: { sink: 0, window: 7 } }, // no sinks
    { nq: 40, nk: 40, hq: 2, hkv: 2, d: 64, dtype: "f32", mask: { sink: 3, window: 1 } }, // sinks + self only
    { nq: 9, nk: 100, hq: 8, hkv: 1, d: 64, dtype: "bf16", mask: { sink: 4, window: 30 } }, // chunk
  ];
  test.each(streaming)("streaming sink=$mask.sink window=$mask.window nq=$nq nk=$nk $dtype", (c) => {
    runCase(c);
  });
});

describe("prefillAttention properties", () => {
  test("the streaming mask with window >= N is causal attention", () => {
    for (const n of [1, 17, 64]) {
      const q = scope.random(rng, [n, 4, 64], "bf16");
      const k = scope.random(rng, [n, 2, 64], "bf16");
      const v = scope.random(rng, [n, 2, 64], "bf16");
      const causal = kernels.prefillAttention({ q: q.tensor, k: k.tensor, v: v.tensor, returnLse: true });
      const sink = rng.int(0, 6);
      const streamed = kernels.prefillAttention({
        q: q.tensor,
        k: k.tensor,
        v: v.tensor,
        returnLse: true,
        streaming: { sink, window: n + rng.int(0, 5) },
      });
      [causal.out, causal.lse, streamed.out, streamed.lse].forEach((t) => scope.add(t));
      expect(Array.from(streamed.out.toArray())).toEqual(Array.from(causal.out.toArray()));
      expect(Array.from(streamed.lse!.toArray())).toEqual(Array.from(causal.lse!.toArray()));
    }
  });

  test("a chunked prefill equals the rows of the whole prefill", () => {
    const n = 53,
      split = 31;
    const q = scope.random(rng, [n, 4, 64], "f32");
    const k = scope.random(rng, [n, 4, 64], "f32");
    const v = scope.random(rng, [n, 4, 64], "f32");
    const whole = kernels.prefillAttention({ q: q.tensor, k: k.tensor, v: v.tensor });
    scope.add(whole.out);
    const tail = scope.add(Tensor.from(q.tensor.toFloat32Array().slice(split * 4 * 64), [n - split, 4, 64]));
    const part = kernels.prefillAttention({ q: tail, k: k.tensor, v: v.tensor });
    scope.add(part.out);
    expect(Array.from(part.out.toArray())).toEqual(Array.from(whole.out.toArray()).slice(split * 4 * 64));
  });
});

describe("fused lazy ratio", () => {
  interface RatioCase {
    n: number;
    hq: number;
    hkv: number;
    dtype: FloatDType;
    sink: number;
    window: number;
    lastQueries: number;
    mask?: Mask;
  }
  const cases: RatioCase[] = [
    { n: 100, hq: 8, hkv: 2, dtype: "f32", sink: 4, window: 16, lastQueries: 8 }, // N > S + W + w_last
    { n: 37, hq: 4, hkv: 1, dtype: "bf16", sink: 4, window: 20, lastQueries: 32 }, // S+W < N < S+W+w_last
    { n: 24, hq: 4, hkv: 4, dtype: "f16", sink: 4, window: 20, lastQueries: 8 }, // N = S + W
    { n: 12, hq: 8, hkv: 1, dtype: "f32", sink: 4, window: 20, lastQueries: 32 }, // N < S + W and N < w_last
    { n: 70, hq: 8, hkv: 8, dtype: "bf16", sink: 0, window: 5, lastQueries: 10 }, // window only
    { n: 70, hq: 4, hkv: 2, dtype: "f32", sink: 2, window: 10, lastQueries: 16, mask: { sink: 2, window: 30 } },
  ];
  test.each(cases)("N=$n S=$sink W=$window last=$lastQueries hq=$hq hkv=$hkv $dtype", (c) => {
    const s = { nq: c.n, nk: c.n, hq: c.hq, hkv: c.hkv, d: 64 };
    const q = scope.random(rng, [c.n, c.hq, 64], c.dtype);
    const k = scope.random(rng, [c.n, c.hkv, 64], c.dtype);
    const v = scope.random(rng, [c.n, c.hkv, 64], c.dtype);
    const spec = { sink: c.sink, window: c.window, lastQueries: c.lastQueries };
    const res = kernels.prefillAttention({ q: q.tensor, k: k.tensor, v: v.tensor, lazyRatio: spec, streaming: c.mask });
    scope.add(res.out);
    scope.add(res.lazyRatio);
    const got = res.lazyRatio!.toFloat32Array();
    const want = referenceLazyRatio(q.values, k.values, s, 1 / 8, spec, c.mask);
    check("lazy ratio", got, want, { rtol: 0, atol: 2e-6 });
    for (const r of got) {
      expect(r).toBeGreaterThanOrEqual(0);
      expect(r).toBeLessThanOrEqual(1);
    }
    if (c.n <= c.sink + c.window) for (const r of got) expect(r).toBeCloseTo(1, 6);
  });

  test("the ratio of a chunk holding the last queries equals the whole prompt's", () => {
    const n = 80;
    const q = scope.random(rng, [n, 4, 64], "f32");
    const k = scope.random(rng, [n, 1, 64], "f32");
    const v = scope.random(rng, [n, 1, 64], "f32");
    const spec = { sink: 4, window: 20, lastQueries: 16 };
    const whole = kernels.prefillAttention({ q: q.tensor, k: k.tensor, v: v.tensor, lazyRatio: spec });
    const tail = scope.add(Tensor.from(q.tensor.toFloat32Array().slice((n - 20) * 4 * 64), [20, 4, 64]));
    const chunk = kernels.prefillAttention({ q: tail, k: k.tensor, v: v.tensor, lazyRatio: spec });
    [whole.out, whole.lazyRatio, chunk.out, chunk.lazyRatio].forEach((t) => scope.add(t));
    expect(Array.from(chunk.lazyRatio!.toArray())).toEqual(Array.from(whole.lazyRatio!.toArray()));
  });
});
