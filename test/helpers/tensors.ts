// Test inputs: random tensors with the float64 values the reference should see.
import { type DeviceName, kernels, Tensor } from "../../lib";
import { type FloatDType, type LinearInput, type Random, referenceLinear, referenceSwiGluOutput, roundArray, roundTo } from "./reference";

export interface RandomTensor {
  tensor: Tensor;
  /** The stored values, rounded to the dtype by the test's own rounding. */
  values: Float64Array;
}

export function randomTensor(rng: Random, shape: number[], dtype: FloatDType, device: DeviceName = "cpu", scale = 1): RandomTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const raw = rng.normals(n, scale);
  return { tensor: Tensor.from(raw, shape, { dtype, device }), values: roundArray(dtype, raw) };
}

export interface PlantedLogits extends RandomTensor {
  /** argmax of rows 0-3, where the edge cases are. */
  planted: number[];
}

/**
 * Random logits [rows >= 4, vocab >= 3] with argmax's edge cases planted at random columns
 * a < b < c: row 0 has its maximum at a and b; row 1 has +Infinity at a and NaN at b and c;
 * row 2 is -0 at a, +0 at b (equal, so a wins) and <= -1 elsewhere; row 3 is +0 at a, <= -1 elsewhere
 * but at b, a positive value below the dtype's smallest normal (a kernel that flushes subnormals
 * to zero would answer a). Rows from 4 on are plain random.
 */
export function plantedLogits(rng: Random, rows: number, vocab: number, dtype: FloatDType, device: DeviceName = "cpu"): PlantedLogits {
  const raw = rng.normals(rows * vocab);
  const [a, b, c] = rng
    .shuffle(Array.from({ length: vocab }, (_, i) => i))
    .slice(0, 3)
    .sort((x, y) => x - y);
  const row = (r: number) => raw.subarray(r * vocab, (r + 1) * vocab);
  const top = Math.ceil(row(0).reduce((m, v) => Math.max(m, v), -Infinity)) + 1; // an integer: exact in every dtype
  row(0)[a] = row(0)[b] = top;
  row(1)[a] = Infinity;
  row(1)[b] = row(1)[c] = NaN;
  // At most -1, not -|v|: a tiny draw would round to -0 in f16 and tie with the planted zeros.
  for (const r of [2, 3]) row(r).forEach((v, i, all) => (all[i] = -Math.abs(v) - 1));
  row(2)[a] = -0;
  row(2)[b] = 0;
  row(3)[a] = 0;
  row(3)[b] = dtype === "f16" ? 2 ** -24 : 2 ** -130;
  return { tensor: Tensor.from(raw, [rows, vocab], { dtype, device }), values: roundArray(dtype, raw), planted: [a, b, a, b] };
}

export function int32Tensor(values: number[], shape: number[] = [values.length], device: DeviceName = "cpu"): Tensor {
  return Tensor.from(Int32Array.from(values), shape, { device });
}

/** Disposes every tensor made in a test, whatever happens. */
export class TensorScope {
  private readonly tensors: Tensor[] = [];
  add<T extends Tensor | undefined>(t: T): T {
    if (t) this.tensors.push(t);
    return t;
  }
  random(rng: Random, shape: number[], dtype: FloatDType, device: DeviceName = "cpu", scale = 1): RandomTensor {
    const r = randomTensor(rng, shape, dtype, device, scale);
    this.add(r.tensor);
    return r;
  }
  ints(values: number[], shape?: number[], device: DeviceName = "cpu"): Tensor {
    return this.add(int32Tensor(values, shape, device));
  }
  dispose(): void {
    for (const t of this.tensors) t.dispose();
    this.tensors.length = 0;
  }
}

/**
 * A random call of `kernels.linear` in one of its forms (input transform, accumulate, SwiGLU
 * output) on m rows, x and out in `dtype`, weight, bias (as asked, else half the time) and norm in `weightType`,
 * on `device`. `run(out, gemm)` makes the call into out (a copy of `before` to accumulate into, or
 * none: the result is then new) on the GEMM `gemm` chooses; `product(gemm)` is the same call
 * without its SwiGLU output; `reference` is its float64 definition (referenceLinear, then
 * referenceSwiGluOutput).
 */
export function randomLinear(
  scope: TensorScope,
  rng: Random,
  c: {
    m: number;
    n: number;
    k: number;
    input: LinearInput;
    accumulate: boolean;
    dtype: FloatDType;
    weightType: FloatDType;
    device?: DeviceName;
    /** n is then the weight's rows, [gate, up], and out [m, n / 2]. */
    swiGluOutput?: boolean;
    /** Whether there is a bias; half the time when not given. */
    bias?: boolean;
  },
) {
  const { m, n, k, input, accumulate } = c;
  const swiGluOutput = c.swiGluOutput ?? false;
  if (swiGluOutput && (accumulate || n % 2 !== 0)) throw new Error("randomLinear: swiGluOutput needs an even n and no accumulate");
  const eps = 1e-5;
  // Half the dtype's smallest subnormal: a rounding's error where half an ulp of the value is less.
  const underflow = c.dtype === "f16" ? 2 ** -25 : 2 ** -134;
  const x = scope.random(rng, [m, input === "swiGlu" ? 2 * k : k], c.dtype, c.device);
  const w = scope.random(rng, [n, k], c.weightType, c.device);
  const g = scope.random(rng, [k], c.weightType, c.device);
  const b = (c.bias ?? rng.next() < 0.5) ? scope.random(rng, [n], c.weightType, c.device) : undefined;
  const before = scope.random(rng, [m, n], c.dtype, c.device);
  const call = (out: Tensor | undefined, gemm: kernels.GemmChoice | undefined, output: boolean): Tensor =>
    kernels.linear({
      x: x.tensor,
      weight: w.tensor,
      bias: b?.tensor,
      out,
      ...(input === "norm" && { norm: { weight: g.tensor, eps } }),
      ...(input === "swiGlu" && { swiGlu: true }),
      ...(output && { swiGluOutput: true }),
      accumulate,
      gemm,
    });
  return {
    before,
    run: (out?: Tensor, gemm?: kernels.GemmChoice): Tensor => call(out, gemm, swiGluOutput),
    product: (gemm?: kernels.GemmChoice): Tensor => call(undefined, gemm, false),
    reference: (ulp: number, partialsRounded = false) => {
      const product = referenceLinear({
        x: x.values,
        m,
        k,
        input,
        norm: g.values,
        eps,
        w: w.values,
        n,
        bias: b?.values,
        before: accumulate ? before.values : undefined,
        ulp,
        underflow,
        partialsRounded,
      });
      const flushed = (c.device ?? "cpu") === "cpu" ? 0 : 2 ** -126;
      return swiGluOutput ? referenceSwiGluOutput(product, m, n / 2, ulp, underflow, flushed) : product;
    },
  };
}

/**
 * SwiGLU of large negative gates, from -100 to -78 (f32's e^-g and 1/(1 + e^-g) leave its normal
 * range there while silu(g) · up stays normal down to about -92), with ups of magnitude 0.5 to 4,
 * in `dtype` on `device`. `outputs()` runs swiGlu on the [1, 2 · inner] gate|up row, and linear's
 * SwiGLU output (on `gemm`) with a one-hot input row that picks each gate and up out of the
 * weight's first column; `want` is float64's silu(g) · up.
 * @example const { ups, want, outputs } = negativeGateSwiGlu(scope, rng, "bf16", "cuda:0", "gemv-only");
 */
export function negativeGateSwiGlu(scope: TensorScope, rng: Random, dtype: FloatDType, device: DeviceName, gemm?: kernels.GemmChoice) {
  const inner = 256,
    k = 8;
  const gates = Array.from({ length: inner }, () => roundTo(dtype, -100 + 22 * rng.next()));
  const ups = Array.from({ length: inner }, () => roundTo(dtype, (rng.next() < 0.5 ? -1 : 1) * (0.5 + 3.5 * rng.next())));
  const want = gates.map((g, j) => (g / (1 + Math.exp(-g))) * ups[j]);
  const column = [...gates, ...ups];
  const gateUp = scope.add(Tensor.from(Float32Array.from(column), [1, 2 * inner], { dtype, device }));
  const weight = scope.random(rng, [2 * inner, k], dtype).values.map((v, i) => (i % k === 0 ? column[i / k] : v));
  const oneHot = scope.add(
    Tensor.from(
      Float32Array.from({ length: k }, (_, i) => (i === 0 ? 1 : 0)),
      [1, k],
      { dtype, device },
    ),
  );
  const w = scope.add(Tensor.from(Float32Array.from(weight), [2 * inner, k], { dtype, device }));
  const outputs = (): Tensor[] => [
    scope.add(kernels.swiGlu({ x: gateUp })),
    scope.add(kernels.linear({ x: oneHot, weight: w, swiGluOutput: true, gemm })),
  ];
  return { inner, ups, want, outputs };
}
