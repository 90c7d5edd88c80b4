// CPU model operations against float64 references written from their definitions.
import { kernels, Tensor } from "../lib";
import {
  errorToScale,
  expectClose,
  type FloatDType,
  Random,
  referenceArgmax,
  roundArray,
  roundTo,
  tolerance,
  worstBeyondBound,
} from "./helpers/reference";
import { negativeGateSwiGlu, plantedLogits, randomLinear, TensorScope } from "./helpers/tensors";

const rng = new Random();
const scope = new TensorScope();
afterEach(() => scope.dispose());

const check = (label: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: { rtol: number; atol: number }) =>
  expectClose(rng, label, got, want, tol);

describe("linear", () => {
  test.each([
    { m: 1, n: 7, k: 33, x: "f32", w: "bf16", bias: false },
    { m: 5, n: 70, k: 64, x: "f32", w: "f16", bias: true },
    { m: 17, n: 33, k: 100, x: "f32", w: "f32", bias: true },
    { m: 3, n: 16, k: 48, x: "bf16", w: "bf16", bias: false },
  ] as Array<{ m: number; n: number; k: number; x: FloatDType; w: FloatDType; bias: boolean }>)(
    "m=$m n=$n k=$k x=$x w=$w bias=$bias",
    (c) => {
      const x = scope.random(rng, [c.m, c.k], c.x),
        w = scope.random(rng, [c.n, c.k], c.w);
      const b = c.bias ? scope.random(rng, [c.n], c.w) : undefined;
      const y = scope.add(kernels.linear({ x: x.tensor, weight: w.tensor, bias: b?.tensor }));
      expect(y.shape).toEqual([c.m, c.n]);
      const want = new Float64Array(c.m * c.n);
      for (let r = 0; r < c.m; r++)
        for (let j = 0; j < c.n; j++) {
          let s = b ? b.values[j] : 0;
          for (let i = 0; i < c.k; i++) s += x.values[r * c.k + i] * w.values[j * c.k + i];
          want[r * c.n + j] = s;
        }
      // f32 sums of k products of unit normals: error ~1e-7·sqrt(k)·|terms|, far under 1e-4.
      const tol = c.x === "f32" ? { rtol: 1e-5, atol: 1e-4 } : tolerance(c.x);
      check("linear", y.toFloat32Array(), want, { ...tol, atol: Math.max(tol.atol, 1e-4) });
    },
  );

  test.each(["f32", "bf16"] as const)("into its own input (out = x, %s) gives what a separate output gives", (dtype) => {
    const m = rng.int(1, 9),
      k = 8 * rng.int(2, 9);
    const w = scope.random(rng, [k, k], "bf16").tensor;
    const x = scope.random(rng, [m, k], dtype).tensor;
    const separate = scope.add(kernels.linear({ x, weight: w })).toFloat32Array();
    const inPlace = kernels.linear({ x, weight: w, out: x });
    expect(inPlace).toBe(x);
    expect(Array.from(x.toFloat32Array())).toEqual(Array.from(separate));
  });

  // The fused forms a decoder layer uses: RMSNorm or SwiGLU of x as the input, and out += the
  // product. Each element against float64 from the definition (referenceLinear's bound).
  test.each(
    (["norm", "swiGlu", "plain"] as const).flatMap((input) =>
      [false, true].flatMap((accumulate) => (["f32", "bf16"] as const).map((dtype) => ({ input, accumulate, dtype }))),
    ),
  )("input $input, accumulate $accumulate, x $dtype, against float64", ({ input, accumulate, dtype }) => {
    const m = rng.int(1, 6),
      n = rng.int(1, 40),
      k = rng.int(1, 3) === 1 ? rng.int(1, 50) : 8 * rng.int(1, 12);
    const call = randomLinear(scope, rng, { m, n, k, input, accumulate, dtype, weightType: "bf16" });
    // Accumulating, the call adds into `before` itself; otherwise it makes its result.
    const y = accumulate ? call.run(call.before.tensor) : scope.add(call.run());
    const { want, bound, scale } = call.reference(dtype === "bf16" ? 2 ** -8 : 2 ** -24);
    const got = y.toFloat32Array();
    // Each element within its bound, and no error common to all of them (a wrong scale, a missing
    // rounding): independent bf16 roundings keep the root mean square near half an ulp (2^-9) of
    // what they act on, and f32 sums of under a hundred terms far below tolerance("f32")'s 1e-5.
    const rms = errorToScale(got, want, scale) < (dtype === "bf16" ? 2 ** -7 : tolerance("f32").rtol);
    expect({ seed: rng.seed, m, n, k, worst: worstBeyondBound(got, want, bound), rms }).toEqual({
      seed: rng.seed,
      m,
      n,
      k,
      worst: "none",
      rms: true,
    });
  });

  // SwiGLU of the product, [gate, up] rows of the weight: what the layer's gate|up projection gives
  // the down projection.
  test.each((["plain", "norm"] as const).flatMap((input) => (["f32", "bf16"] as const).map((dtype) => ({ input, dtype }))))(
    "SwiGLU output, input $input, x $dtype, against float64",
    ({ input, dtype }) => {
      const m = rng.int(1, 6),
        inner = rng.int(1, 40),
        k = rng.int(1, 3) === 1 ? rng.int(1, 50) : 8 * rng.int(1, 12);
      const call = randomLinear(scope, rng, {
        m,
        n: 2 * inner,
        k,
        input,
        accumulate: false,
        dtype,
        weightType: "bf16",
        swiGluOutput: true,
      });
      const y = scope.add(call.run());
      expect(y.shape).toEqual([m, inner]);
      const { want, bound, scale } = call.reference(dtype === "bf16" ? 2 ** -8 : 2 ** -24);
      const got = y.toFloat32Array();
      const rms = errorToScale(got, want, scale) < (dtype === "bf16" ? 2 ** -7 : tolerance("f32").rtol);
      expect({ seed: rng.seed, m, inner, k, worst: worstBeyondBound(got, want, bound), rms }).toEqual({
        seed: rng.seed,
        m,
        inner,
        k,
        worst: "none",
        rms: true,
      });
    },
  );

  // Gates from -100 to -78: e^-g overflows f32 below -88.7 while silu(g) is a normal number down
  // to -91.8 (and a subnormal below). swiGlu, and linear's SwiGLU output with a one-hot input row
  // that picks each gate and up out of the weight's first column, against float64: silu's own
  // rounding in f32 arithmetic (exp and log of arguments near -85: 2^-16 of it), then the dtype's.
  test.each(["f32", "bf16"] as const)("SwiGLU of large negative gates, in swiGlu and in linear's SwiGLU output (%s)", (dtype) => {
    const ulp = dtype === "bf16" ? 2 ** -8 : 2 ** -24,
      underflow = dtype === "bf16" ? 2 ** -134 : 2 ** -150;
    const { inner, ups, want, outputs } = negativeGateSwiGlu(scope, rng, dtype, "cpu");
    const bound = want.map((v, j) => (ulp + 2 ** -16) * Math.abs(v) + 2 ** -150 * (1 + Math.abs(ups[j])) + underflow);
    for (const out of outputs())
      expect({ seed: rng.seed, worst: worstBeyondBound(out.toFloat32Array(), want, bound) }).toEqual({ seed: rng.seed, worst: "none" });
    expect(want.filter((v) => Math.abs(v) > 2 ** -126).length).toBeGreaterThan(inner / 4);
  });

  // A row's outputs must not depend on the rows beside it (a batch gives what each sequence gives
  // alone; a prefill's rows what decode steps give), however the CPU kernel splits the work: a
  // row's products come from blocks of weight rows (a short last block too), whatever the other rows.
  test.each(["f32", "bf16"] as const)("each row gives what it gives alone, bit for bit (x %s)", (dtype) => {
    const m = rng.int(2, 40),
      n = rng.int(1, 70),
      k = rng.int(1, 600);
    const w = scope.random(rng, [n, k], "bf16").tensor;
    const bias = scope.random(rng, [n], "bf16").tensor;
    const x = scope.random(rng, [m, k], dtype);
    const together = scope.add(kernels.linear({ x: x.tensor, weight: w, bias })).toFloat32Array();
    const rows = Array.from({ length: m }, (_, r) => {
      const row = scope.add(Tensor.from(Float32Array.from(x.values.subarray(r * k, (r + 1) * k)), [1, k], { dtype }));
      return Array.from(scope.add(kernels.linear({ x: row, weight: w, bias })).toFloat32Array());
    });
    expect({ seed: rng.seed, m, n, k, values: Array.from(together) }).toEqual({ seed: rng.seed, m, n, k, values: rows.flat() });
  });

  test("the fused norm and SwiGLU give what rmsNorm or swiGlu and then linear give, bit for bit (f32)", () => {
    const m = rng.int(1, 5),
      n = rng.int(1, 30),
      k = rng.int(1, 70);
    const w = scope.random(rng, [n, k], "bf16").tensor;
    const g = scope.random(rng, [k], "bf16").tensor;
    const x = scope.random(rng, [m, k], "f32").tensor;
    const gateUp = scope.random(rng, [m, 2 * k], "f32").tensor;
    const normed = scope.add(kernels.rmsNorm({ x, weight: g, eps: 1e-6 }));
    const separateNorm = scope.add(kernels.linear({ x: normed, weight: w })).toFloat32Array();
    const fusedNorm = scope.add(kernels.linear({ x, norm: { weight: g, eps: 1e-6 }, weight: w })).toFloat32Array();
    expect({ seed: rng.seed, values: Array.from(fusedNorm) }).toEqual({ seed: rng.seed, values: Array.from(separateNorm) });
    const act = scope.add(kernels.swiGlu({ x: gateUp }));
    const separateGlu = scope.add(kernels.linear({ x: act, weight: w })).toFloat32Array();
    const fusedGlu = scope.add(kernels.linear({ x: gateUp, swiGlu: true, weight: w })).toFloat32Array();
    expect({ seed: rng.seed, values: Array.from(fusedGlu) }).toEqual({ seed: rng.seed, values: Array.from(separateGlu) });
  });

  test("constantWeight changes only when the weight may be read, not the result (bit for bit)", () => {
    const m = rng.int(1, 5),
      n = rng.int(2, 30) * 2,
      k = rng.int(1, 70);
    const w = scope.random(rng, [n, k], "bf16").tensor;
    const g = scope.random(rng, [k], "bf16").tensor;
    const x = scope.random(rng, [m, k], "f32").tensor;
    const variants: Array<Partial<Parameters<typeof kernels.linear>[0]>> = [{}, { norm: { weight: g, eps: 1e-6 } }, { swiGluOutput: true }];
    for (const options of variants) {
      const plain = scope.add(kernels.linear({ x, weight: w, ...options })).toFloat32Array();
      const constant = scope.add(kernels.linear({ x, weight: w, ...options, constantWeight: true })).toFloat32Array();
      expect({ seed: rng.seed, options: Object.keys(options), values: Array.from(constant) }).toEqual({
        seed: rng.seed,
        options: Object.keys(options),
        values: Array.from(plain),
      });
    }
  });

  test("refuses what the fused forms cannot mean, and leaves out as it was", () => {
    const x = scope.random(rng, [2, 8], "f32").tensor,
      w = scope.random(rng, [4, 8], "f32").tensor,
      g = scope.random(rng, [8], "f32").tensor,
      y = scope.random(rng, [2, 4], "f32").tensor;
    const before = Array.from(y.toFloat32Array());
    const refused: Array<[Partial<Parameters<typeof kernels.linear>[0]>, RegExp]> = [
      [{ accumulate: true, out: undefined }, /accumulate adds into out, so out must be given/],
      [{ norm: { weight: g }, swiGlu: true }, /norm and swiGlu .* give one of them/],
      [{ swiGlu: true }, /twice the weight's input size 8/],
      [{ norm: { weight: scope.random(rng, [7], "f32").tensor } }, /norm\.weight must have shape \[8\]/],
      [{ norm: { weight: scope.random(rng, [8], "bf16").tensor } }, /norm\.weight must be f32/],
      [{ norm: { weight: "g" as unknown as Tensor } }, /norm\.weight must be a Tensor/],
      [{ norm: { weight: g, eps: Number.NaN } }, /eps must be a finite number > 0/],
      [{ norm: { weight: g, eps: 0 } }, /eps must be a finite number > 0/],
      [{ norm: { weight: g, eps: "1e-5" as unknown as number } }, /eps must be a number/],
      [{ swiGlu: 1 as unknown as boolean }, /swiGlu must be true, false or undefined/],
      [{ accumulate: "yes" as unknown as boolean }, /accumulate must be true, false or undefined/],
      [{ gemm: "cublaslt" as kernels.GemmChoice }, /gemm must be one of auto, cublasLt, gemv, gemv-only, cublas, fallback, got cublaslt/],
      [{ swiGluOutput: true }, /out must have shape \[2, 2\]/],
      [
        { swiGluOutput: true, weight: scope.random(rng, [3, 8], "f32").tensor },
        /swiGluOutput needs the weight's rows to hold \[gate, up\], an even number of them; got 3/,
      ],
      [{ swiGluOutput: true, accumulate: true }, /swiGluOutput and accumulate cannot be combined/],
      [{ swiGluOutput: "yes" as unknown as boolean }, /swiGluOutput must be true, false or undefined/],
      [{ constantWeight: 1 as unknown as boolean }, /constantWeight must be true, false or undefined/],
    ];
    for (const [options, message] of refused) {
      expect(() => kernels.linear({ x, weight: w, out: y, ...options })).toThrow(message);
      expect(Array.from(y.toFloat32Array())).toEqual(before);
    }
    // out shares bytes with an input it is computed from.
    const square = scope.random(rng, [8, 8], "f32").tensor;
    expect(() => kernels.linear({ x, weight: square, out: x, accumulate: true })).toThrow(
      /out overlaps x, .* give out a tensor of its own/,
    );
    expect(() => kernels.linear({ x, weight: square, out: x, norm: { weight: g } })).toThrow(/out overlaps x/);
    // A plain product on the CPU reads x whole first, so out may overlap it there.
    const rows = scope.random(rng, [8, 8], "f32").tensor;
    expect(() => kernels.linear({ x: scope.add(rows.rows(0, 4)), weight: square, out: scope.add(rows.rows(2, 4)) })).not.toThrow();
    const narrow = scope.random(rng, [2, 2], "f32").tensor;
    expect(() => kernels.linear({ x: narrow, weight: scope.add(y.reshape([4, 2])), out: y, accumulate: true })).toThrow(
      /out overlaps weight/,
    );
    const bias = scope.random(rng, [4], "f32").tensor;
    expect(() =>
      kernels.linear({ x: scope.random(rng, [1, 8], "f32").tensor, weight: w, bias, out: scope.add(bias.reshape([1, 4])) }),
    ).toThrow(/out overlaps bias/);
    expect(() =>
      kernels.linear({
        x: scope.random(rng, [1, 4], "f32").tensor,
        weight: scope.random(rng, [8, 4], "f32").tensor,
        norm: { weight: scope.add(g.rows(0, 4)) },
        out: scope.add(g.reshape([1, 8])),
      }),
    ).toThrow(/out overlaps norm\.weight/);
  });

  test("keeps leading dimensions", () => {
    const x = scope.random(rng, [2, 3, 8], "f32").tensor,
      w = scope.random(rng, [5, 8], "f32").tensor;
    expect(scope.add(kernels.linear({ x, weight: w })).shape).toEqual([2, 3, 5]);
  });
});

test.each(["f32", "bf16"] as const)("rmsNorm with and without the fused residual (%s)", (dtype) => {
  const rows = 5,
    dim = 48,
    eps = 1e-5;
  const x = scope.random(rng, [rows, dim], dtype),
    w = scope.random(rng, [dim], dtype);
  const res = scope.random(rng, [rows, dim], dtype);
  const plain = scope.add(kernels.rmsNorm({ x: x.tensor, weight: w.tensor, eps }));
  const fused = scope.add(kernels.rmsNorm({ x: x.tensor, weight: w.tensor, eps, residual: res.tensor }));
  const norm = (v: ArrayLike<number>) => {
    const out = new Float64Array(rows * dim);
    for (let r = 0; r < rows; r++) {
      let ms = 0;
      for (let i = 0; i < dim; i++) ms += v[r * dim + i] ** 2;
      const inv = 1 / Math.sqrt(ms / dim + eps);
      for (let i = 0; i < dim; i++) out[r * dim + i] = v[r * dim + i] * inv * w.values[i];
    }
    return out;
  };
  check("plain", plain.toFloat32Array(), norm(x.values), tolerance(dtype));
  const sum = x.values.map((v, i) => roundTo(dtype, v + res.values[i]));
  check("residual updated", res.tensor.toFloat32Array(), sum, tolerance(dtype));
  check("fused", fused.toFloat32Array(), norm(sum), tolerance(dtype));
});

test("rope rotates pairs (i, i + d/2) by position · invFreq, at large positions too", () => {
  const tokens = 6,
    hq = 4,
    hkv = 2,
    d = 16;
  const q = scope.random(rng, [tokens, hq, d], "f32"),
    k = scope.random(rng, [tokens, hkv, d], "f32");
  const positions = [0, 1, 2, 1000, 65535, 131071];
  const invFreq = Float32Array.from({ length: d / 2 }, (_, i) => 1 / 500000 ** ((2 * i) / d));
  kernels.rope({ q: q.tensor, k: k.tensor, positions: scope.ints(positions), invFreq: scope.add(Tensor.from(invFreq, [d / 2])) });
  const rotate = (v: Float64Array, heads: number) => {
    const out = new Float64Array(v.length);
    for (let t = 0; t < tokens; t++)
      for (let h = 0; h < heads; h++)
        for (let i = 0; i < d / 2; i++) {
          const angle = Math.fround(positions[t] * invFreq[i]); // formed in f32, as transformers does
          const base = (t * heads + h) * d;
          const a = v[base + i],
            b = v[base + i + d / 2];
          out[base + i] = a * Math.cos(angle) - b * Math.sin(angle);
          out[base + i + d / 2] = b * Math.cos(angle) + a * Math.sin(angle);
        }
    return out;
  };
  check("q", q.tensor.toFloat32Array(), rotate(q.values, hq), { rtol: 1e-5, atol: 1e-5 });
  check("k", k.tensor.toFloat32Array(), rotate(k.values, hkv), { rtol: 1e-5, atol: 1e-5 });
});

test("swiGlu is silu(gate) · up", () => {
  const rows = 3,
    inner = 10;
  const x = scope.random(rng, [rows, 2 * inner], "f32", "cpu", 3);
  const y = scope.add(kernels.swiGlu({ x: x.tensor }));
  const want = new Float64Array(rows * inner);
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < inner; j++) {
      const g = x.values[r * 2 * inner + j],
        u = x.values[r * 2 * inner + inner + j];
      want[r * inner + j] = (g / (1 + Math.exp(-g))) * u;
    }
  check("swiGlu", y.toFloat32Array(), want, { rtol: 1e-5, atol: 1e-6 });
});

test("embedding gathers rows and converts dtypes", () => {
  const table = scope.random(rng, [11, 6], "bf16");
  const ids = [3, 0, 10, 3];
  const y = scope.add(kernels.embedding({ ids: scope.ints(ids), table: table.tensor, dtype: "f32" }));
  const want = ids.flatMap((id) => Array.from(table.values.slice(id * 6, id * 6 + 6)));
  expect(Array.from(y.toFloat32Array())).toEqual(want);
  expect(() => kernels.embedding({ ids: scope.ints([11]), table: table.tensor })).toThrow(/ids\[0\] = 11 is outside the vocabulary 0..10/);
});

describe("tokenLogprobs", () => {
  /** log softmax(row)[target] in float64 from the values the kernel sees. */
  function referenceLogprob(values: Float64Array, row: number, vocab: number, target: number): number {
    const slice = values.subarray(row * vocab, (row + 1) * vocab);
    const max = slice.reduce((m, v) => Math.max(m, v), -Infinity);
    const sum = slice.reduce((a, v) => a + Math.exp(v - max), 0);
    return slice[target] - max - Math.log(sum);
  }

  test.each([
    ["f32", 5, 1003],
    ["f16", 4, 4096],
    ["bf16", 3, 32000],
  ] as Array<[FloatDType, number, number]>)("%s logits [%i, %i] against float64", (dtype, rows, vocab) => {
    // Scaled so the rows are far from uniform: the answer depends on the max shift and the sum.
    const logits = scope.random(rng, [rows, vocab], dtype, "cpu", 8);
    const targets = Array.from({ length: rows }, () => rng.int(0, vocab - 1));
    const out = scope.add(kernels.tokenLogprobs({ logits: logits.tensor, targets: scope.ints(targets) }));
    expect(out.dtype).toBe("f32");
    expect(out.shape).toEqual([rows]);
    const want = targets.map((t, r) => referenceLogprob(logits.values, r, vocab, t));
    const got = Array.from(out.toFloat32Array());
    got.forEach((v, r) => expect(Math.abs(v - want[r])).toBeLessThan(1e-5 * Math.max(1, Math.abs(want[r]))));
  });

  test("a row holding NaN gives NaN, -Infinity logits count as zero probability", () => {
    const logits = scope.add(Tensor.from(Float32Array.of(1, Number.NaN, 2, 3, -Infinity, Math.log(3)), [2, 3]));
    const got = scope.add(kernels.tokenLogprobs({ logits, targets: scope.ints([0, 2]) })).toFloat32Array();
    expect(got[0]).toBeNaN();
    // Row 1: p = [e^3, 0, 3] / (e^3 + 3).
    expect(got[1]).toBeCloseTo(Math.log(3 / (Math.exp(3) + 3)), 6);
  });

  test("rejects targets outside the vocabulary and wrong shapes", () => {
    const logits = scope.random(rng, [2, 10], "f32").tensor;
    expect(() => kernels.tokenLogprobs({ logits, targets: scope.ints([0, 10]) })).toThrow(
      /tokenLogprobs: targets\[1\] = 10 is outside the vocabulary 0..9/,
    );
    expect(() => kernels.tokenLogprobs({ logits, targets: scope.ints([-1, 0]) })).toThrow(/targets\[0\] = -1/);
    expect(() => kernels.tokenLogprobs({ logits, targets: scope.ints([0]) })).toThrow(
      /tokenLogprobs: targets must have shape \[2\], got \[1\]/,
    );
    expect(() => kernels.tokenLogprobs({ logits, targets: scope.ints([0, 1]), out: scope.ints([0, 0]) })).toThrow(
      /tokenLogprobs: out must be f32, got i32/,
    );
  });
});

describe("argmax", () => {
  test("picks the first maximum", () => {
    const logits = scope.add(Tensor.from(new Float32Array([1, 5, 5, 2, -1, -3, -1, -2]), [2, 4]));
    expect(Array.from(scope.add(kernels.argmax({ logits })).toArray())).toEqual([1, 0]);
  });

  // 1003 is no multiple of any vector width; 4096 is one of all of them.
  test.each([
    ["f32", 7, 1003],
    ["f32", 6, 4096],
    ["f16", 7, 1003],
    ["f16", 6, 4096],
    ["bf16", 7, 1003],
    ["bf16", 6, 4096],
  ] as Array<[FloatDType, number, number]>)("%s logits [%i, %i]: NaN above all, ties to the lowest index", (dtype, rows, vocab) => {
    const logits = plantedLogits(rng, rows, vocab, dtype);
    scope.add(logits.tensor);
    const out = scope.add(kernels.argmax({ logits: logits.tensor }));
    expect(out.dtype).toBe("i32");
    expect(out.shape).toEqual([rows]);
    const got = Array.from(out.toArray());
    // The seed rides along so a failure can be replayed.
    expect({ seed: rng.seed, got }).toEqual({ seed: rng.seed, got: referenceArgmax(logits.values, rows, vocab) });
    expect(got.slice(0, 4)).toEqual(logits.planted);
  });

  test("rejects integer logits and a wrong out", () => {
    const logits = scope.random(rng, [3, 10], "f32").tensor;
    expect(() => kernels.argmax({ logits: scope.ints([1, 2, 3, 4], [2, 2]) })).toThrow(/argmax: logits must be f32, f16 or bf16, got i32/);
    expect(() => kernels.argmax({ logits: scope.random(rng, [10], "f32").tensor })).toThrow(
      /argmax: logits must have 2 dimensions, got shape \[10\]/,
    );
    expect(() => kernels.argmax({ logits, out: scope.ints([0, 0]) })).toThrow(/argmax: out must have shape \[3\], got \[2\]/);
    expect(() => kernels.argmax({ logits, out: scope.random(rng, [3], "f32").tensor })).toThrow(/argmax: out must be i32, got f32/);
  });
});

test("model ops reject mismatched shapes", () => {
  const x = scope.random(rng, [2, 8], "f32").tensor;
  expect(() => kernels.linear({ x, weight: scope.random(rng, [4, 9], "f32").tensor })).toThrow(
    /last dimension must be the weight's input size 9/,
  );
  expect(() => kernels.rmsNorm({ x, weight: scope.random(rng, [7], "f32").tensor })).toThrow(/weight's size 7/);
  expect(() => kernels.swiGlu({ x: scope.random(rng, [2, 7], "f32").tensor })).toThrow(/must be even/);
});

/** topCandidates from its definition, in float64: per row the max, the mass and every logit >= the k-th. */
function referenceTopCandidates(values: ArrayLike<number>, rows: number, vocab: number, k: number, temperature: ArrayLike<number>) {
  return Array.from({ length: rows }, (_, r) => {
    const row = Array.from({ length: vocab }, (_, j) => values[r * vocab + j]);
    const kept = row.filter((v) => !Number.isNaN(v)).sort((a, b) => b - a);
    const max = kept.length ? kept[0] : -Infinity;
    const mass = max === -Infinity ? 0 : kept.reduce((a, v) => a + Math.exp((v - max) / temperature[r]), 0);
    const threshold = kept[Math.min(k, kept.length) - 1];
    const members = row.flatMap((v, j) => (v >= threshold ? [j] : []));
    return { max, mass, members, row };
  });
}

describe("topCandidates", () => {
  test.each([
    ["f32", 1003, 40],
    ["bf16", 1003, 1],
    ["f16", 4096, 64],
    ["bf16", 4096, 256],
  ] as Array<[FloatDType, number, number]>)("%s logits, vocab %i, k %i", (dtype, vocab, k) => {
    const rows = 6,
      capacity = 2 * k;
    const raw = rng.normals(rows * vocab, 3);
    const row = (r: number) => raw.subarray(r * vocab, (r + 1) * vocab);
    // Row 0: three logits from below the k-th largest are raised to tie with it, so count >= k + 3.
    const rounded0 = roundArray(dtype, row(0));
    const kth = Array.from(rounded0).sort((a, b) => b - a)[k - 1];
    const below = rng.shuffle(Array.from({ length: vocab }, (_, i) => i).filter((i) => rounded0[i] < kth));
    for (const i of below.slice(0, 3)) row(0)[i] = kth;
    // Row 1: NaNs, which never count; row 2: -Infinity, an ordinary (least likely) value.
    for (let i = 0; i < 5; i++) row(1)[rng.int(0, vocab - 1)] = NaN;
    for (let i = 0; i < vocab / 2; i++) row(2)[rng.int(0, vocab - 1)] = -Infinity;
    // Row 3: all equal, more candidates than capacity; row 4: fewer logits than k that are not NaN.
    row(3).fill(rng.normal());
    row(4).fill(NaN);
    row(4)[rng.int(0, vocab - 1)] = rng.normal();
    const temperature = Float32Array.from({ length: rows }, () => 0.3 + 1.7 * rng.next());
    const logits = scope.add(Tensor.from(raw, [rows, vocab], { dtype }));
    const c = kernels.topCandidates({ logits, temperature: scope.add(Tensor.from(temperature, [rows])), k });
    Object.values(c).forEach((t) => scope.add(t));
    const ids = c.ids.toArray() as Int32Array,
      scores = c.scores.toFloat32Array(),
      count = c.count.toArray() as Int32Array;
    const max = c.max.toFloat32Array(),
      mass = c.mass.toFloat32Array();
    const want = referenceTopCandidates(roundArray(dtype, raw), rows, vocab, k, temperature);
    want.forEach((w, r) => {
      const label = `row ${r} (seed ${rng.seed})`;
      expect([label, max[r]]).toEqual([label, w.max]);
      expect([label, count[r]]).toEqual([label, w.members.length]);
      expect(Math.abs(mass[r] - w.mass)).toBeLessThanOrEqual(1e-6 * w.mass);
      const stored = Array.from(ids.subarray(r * capacity, r * capacity + Math.min(count[r], capacity)));
      stored.forEach((id, i) => expect(scores[r * capacity + i]).toBe(w.row[id]));
      if (count[r] <= capacity) expect([label, [...stored].sort((a, b) => a - b)]).toEqual([label, w.members]);
      else expect(new Set(stored).size).toBe(capacity); // overflow: capacity distinct members
      stored.forEach((id) => expect(w.members).toContain(id));
    });
    expect(count[0]).toBeGreaterThanOrEqual(k + 3);
    expect(count[3]).toBe(vocab);
    expect(count[4]).toBe(1);
  });

  test("a capacity past the vocabulary is cut to it: the same candidates, nothing huge allocated", () => {
    const vocab = rng.int(3, 40);
    const logits = scope.random(rng, [3, vocab], "bf16").tensor;
    const temperature = scope.add(Tensor.from(Float32Array.of(0.5, 1, 2), [3]));
    const k = rng.int(1, vocab);
    // Past count[r] a row's slots hold nothing defined, so the stored candidates are compared as sets.
    const run = (capacity?: number) => {
      const c = kernels.topCandidates({ logits, temperature, k, capacity });
      Object.values(c).forEach((t) => scope.add(t));
      const width = c.ids.shape[1],
        ids = c.ids.toArray() as Int32Array,
        scores = c.scores.toFloat32Array(),
        count = Array.from(c.count.toArray() as Int32Array);
      const stored = count.map((n, r) =>
        Array.from({ length: Math.min(n, width) }, (_, i) => [ids[r * width + i], scores[r * width + i]]).sort((a, b) => a[0] - b[0]),
      );
      return { shape: c.ids.shape, count, stored, max: Array.from(c.max.toFloat32Array()), mass: Array.from(c.mass.toFloat32Array()) };
    };
    const exact = run(vocab);
    expect(exact.shape).toEqual([3, vocab]);
    for (const capacity of [2 ** 31 - 1, vocab + rng.int(1, 100), k === vocab ? undefined : vocab]) expect(run(capacity)).toEqual(exact);
    // The default capacity, 2k, past the vocabulary.
    const all = kernels.topCandidates({ logits, temperature, k: vocab });
    Object.values(all).forEach((t) => scope.add(t));
    expect(all.ids.shape).toEqual([3, vocab]);
  });

  test("bad arguments throw", () => {
    const logits = scope.random(rng, [2, 10], "f32").tensor;
    const temperature = scope.add(Tensor.from(Float32Array.of(1, 1), [2]));
    expect(() => kernels.topCandidates({ logits, temperature, k: 11, capacity: 20 })).toThrow(
      /topCandidates: k must be in \[1, 10\], got 11/,
    );
    for (const capacity of [3, 2 ** 31, 7e207, 4.5])
      expect(() => kernels.topCandidates({ logits, temperature, k: 4, capacity })).toThrow(
        /topCandidates: capacity must be an integer >= k \(4\) and <= 2147483647, got /,
      );
    for (const k of [7n, 2.5, 0, "3", Number.NaN])
      expect(() => kernels.topCandidates({ logits, temperature, k: k as number })).toThrow(
        /topCandidates: k must be an integer >= 1, got /,
      );
    expect(() => kernels.topCandidates({ logits, temperature: scope.add(Tensor.from(Float32Array.of(1), [1])), k: 2 })).toThrow(
      /temperature must have shape \[2\], got \[1\]/,
    );
    expect(() => kernels.topCandidates({ logits: scope.ints([1, 2], [1, 2]), temperature, k: 1 })).toThrow(
      /logits must be f32, f16 or bf16, got i32/,
    );
  });
});

describe("repetitionPenalty", () => {
  test.each(["f32", "bf16", "f16"] as FloatDType[])(
    "divides positive and multiplies other logits of the tokens each row has seen (%s)",
    (dtype) => {
      const rows = 5,
        vocab = 777;
      const logits = scope.random(rng, [rows, vocab], dtype, "cpu", 3);
      const seenByRow = Array.from({ length: rows }, (_, r) =>
        r === 2 ? [] : [...new Set(Array.from({ length: rng.int(1, 60) }, () => rng.int(0, vocab - 1)))],
      );
      const penalty = Float32Array.from({ length: rows }, () => 0.5 + 1.5 * rng.next());
      const offsets = Int32Array.from([0, ...seenByRow.map((_, r) => seenByRow.slice(0, r + 1).flat().length)]);
      kernels.repetitionPenalty({
        logits: logits.tensor,
        ids: scope.ints(seenByRow.flat()),
        offsets: scope.add(Tensor.from(offsets, [rows + 1])),
        penalty: scope.add(Tensor.from(penalty, [rows])),
      });
      const got = logits.tensor.toFloat32Array();
      const want = Float64Array.from(logits.values);
      seenByRow.forEach((ids, r) =>
        ids.forEach((id) => {
          const x = want[r * vocab + id];
          // In f32 (Math.fround: IEEE single division and product), then rounded to the dtype.
          want[r * vocab + id] = roundTo(
            dtype,
            Math.fround(x > 0 ? Math.fround(x) / Math.fround(penalty[r]) : Math.fround(x) * Math.fround(penalty[r])),
          );
        }),
      );
      expect(Array.from(got)).toEqual(Array.from(want));
    },
  );

  test("bad ids and offsets throw and leave the logits alone", () => {
    const logits = scope.random(rng, [2, 10], "f32");
    const penalty = scope.add(Tensor.from(Float32Array.of(1.5, 1.5), [2]));
    const run = (ids: number[], offsets: number[]) =>
      kernels.repetitionPenalty({ logits: logits.tensor, ids: scope.ints(ids), offsets: scope.ints(offsets), penalty });
    expect(() => run([3, 3], [0, 2, 2])).toThrow(/row 0 lists token 3 twice/);
    expect(() => run([3, 10], [0, 1, 2])).toThrow(/ids\[1\] = 10 is outside the vocabulary 0..9/);
    expect(() => run([3, 4], [0, 2, 1])).toThrow(/offsets must start at 0 and end at ids' length 2/);
    expect(() => run([3, 4], [1, 2, 2])).toThrow(/offsets must start at 0/);
    expect(() => run([3, 4, 5], [0, 2, 1, 3].slice(0, 3))).toThrow(/end at ids' length 3/);
    // A middle offset past ids is refused before any row's ids are read (it read past them).
    expect(() => run([3, 4, 5, 6], [0, 100, 4])).toThrow(/offsets must not decrease, but offsets\[2\] < offsets\[1\]/);
    expect(() => run([3, 4, 5, 6], [0, 2 ** 31 - 1, 4])).toThrow(/offsets must not decrease/);
    expect(Array.from(logits.tensor.toFloat32Array())).toEqual(Array.from(logits.values));
  });
});
