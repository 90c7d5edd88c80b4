// Plain float64 references for the tests, written without looking at the kernels: attention
// straight from its definition, dtype rounding straight from the number formats.
export type FloatDType = "f32" | "f16" | "bf16";

// Jest runs a test file in a vm context, where a global name (Math, Number) is looked up through
// the context's global object on every use: about five times slower in the loops below, which
// run over tens of millions of elements in the GPU tests. A module-level name is looked up once.
export const math = Math;
const number = Number;

/** A seeded generator so a failure can be replayed; the seed is fresh on every run. */
export class Random {
  readonly seed: number;
  private state: number;
  constructor(seed = (Date.now() ^ math.floor(math.random() * 2 ** 31)) >>> 0) {
    this.seed = seed;
    this.state = seed || 1;
  }
  /** Uniform in [0, 1). */
  next(): number {
    // mulberry32
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = this.state;
    t = math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  normal(): number {
    const u = 1 - this.next(),
      v = this.next();
    return math.sqrt(-2 * math.log(u)) * math.cos(2 * math.PI * v);
  }
  int(lo: number, hi: number): number {
    return lo + math.floor(this.next() * (hi - lo + 1));
  }
  /** Normal values, never all zero. */
  normals(n: number, scale = 1): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = this.normal() * scale;
    return a;
  }
  /** Uniform values in (-2, 2), never zero. */
  floats(n: number): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = this.next() * 4 - 2 || 0.5;
    return a;
  }
  pick<T>(items: readonly T[]): T {
    return items[math.floor(this.next() * items.length)];
  }
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = math.floor(this.next() * (i + 1));
      [items[i], items[j]] = [items[j], items[i]];
    }
    return items;
  }
}

/** Round to the nearest value with `bits` significant bits, ties to even, with `minExp` the smallest normal exponent. */
function roundSignificant(x: number, bits: number, minExp: number, maxFinite: number): number {
  if (!number.isFinite(x) || x === 0) return x;
  const a = math.abs(x);
  const e = math.max(math.floor(math.log2(a)), minExp);
  const ulp = 2 ** (e - (bits - 1));
  const scaled = a / ulp;
  let r = math.floor(scaled);
  const frac = scaled - r;
  if (frac > 0.5 || (frac === 0.5 && r % 2 === 1)) r += 1;
  const rounded = r * ulp;
  const limit = maxFinite + ulp / 2; // values at or past the midpoint to the next binade overflow
  return math.sign(x) * (rounded > maxFinite || a >= limit ? Infinity : rounded);
}

/** The value `x` takes when stored as `dtype`. */
export function roundTo(dtype: FloatDType, x: number): number {
  switch (dtype) {
    case "f32":
      return math.fround(x);
    case "bf16":
      return roundSignificant(math.fround(x), 8, -126, 3.3895313892515355e38);
    case "f16":
      return roundSignificant(math.fround(x), 11, -14, 65504);
  }
}

export function roundArray(dtype: FloatDType, a: Float32Array): Float64Array {
  // A loop, not Float64Array.from with a map function, which is several times slower.
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = roundTo(dtype, a[i]);
  return out;
}

export interface AttentionShape {
  nq: number;
  nk: number;
  hq: number;
  hkv: number;
  d: number;
}

export interface Mask {
  sink: number;
  window: number;
}

/** Whether key j is visible to the query at `pos` (causal, optionally streaming). */
export function visible(j: number, pos: number, mask?: Mask): boolean {
  if (j > pos) return false;
  return !mask || j < mask.sink || pos - j < mask.window;
}

/** Softmax probabilities of one (query, head) row over keys 0..nk-1 (0 where masked), and its LSE. */
export function attentionRow(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  s: AttentionShape,
  qi: number,
  h: number,
  scale: number,
  mask?: Mask,
): { probs: Float64Array; lse: number } {
  const kvh = math.floor(h / (s.hq / s.hkv));
  const pos = s.nk - s.nq + qi;
  const scores = new Float64Array(s.nk).fill(-Infinity);
  let max = -Infinity;
  for (let j = 0; j < s.nk; j++) {
    if (!visible(j, pos, mask)) continue;
    let dot = 0;
    for (let i = 0; i < s.d; i++) dot += q[(qi * s.hq + h) * s.d + i] * k[(j * s.hkv + kvh) * s.d + i];
    scores[j] = dot * scale;
    max = math.max(max, scores[j]);
  }
  let sum = 0;
  for (let j = 0; j < s.nk; j++) sum += scores[j] === -Infinity ? 0 : math.exp(scores[j] - max);
  const probs = Float64Array.from(scores, (x) => (x === -Infinity ? 0 : math.exp(x - max) / sum));
  return { probs, lse: max + math.log(sum) };
}

/** out [nq, hq, d] and lse [nq, hq] of attention from its definition. */
export function referenceAttention(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  s: AttentionShape,
  scale: number,
  mask?: Mask,
): { out: Float64Array; lse: Float64Array } {
  const out = new Float64Array(s.nq * s.hq * s.d);
  const lse = new Float64Array(s.nq * s.hq);
  for (let qi = 0; qi < s.nq; qi++) {
    for (let h = 0; h < s.hq; h++) {
      const kvh = math.floor(h / (s.hq / s.hkv));
      const row = attentionRow(q, k, s, qi, h, scale, mask);
      lse[qi * s.hq + h] = row.lse;
      for (let j = 0; j < s.nk; j++) {
        if (row.probs[j] === 0) continue;
        for (let i = 0; i < s.d; i++) out[(qi * s.hq + h) * s.d + i] += row.probs[j] * v[(j * s.hkv + kvh) * s.d + i];
      }
    }
  }
  return { out, lse };
}

/**
 * Rows [length + ownCount, rowSize] by position for attention over a paged cache: position p <
 * length read from pool slot table[s / pageSize] * pageSize + s % pageSize, s = p for a full
 * cache, and for a ring s = p if p < sink else sink + (p - sink) mod window, NaN where the ring
 * no longer holds p (past its sinks it keeps the last `window` positions); then the own rows.
 */
export function rowsThroughPages(
  pool: ArrayLike<number>,
  table: readonly number[],
  pageSize: number,
  length: number,
  rowSize: number,
  ring: Mask | undefined,
  own: ArrayLike<number>,
): Float64Array {
  const rows = new Float64Array(length * rowSize + own.length);
  for (let p = 0; p < length; p++) {
    const held = !ring || p < ring.sink || p >= length - ring.window;
    const s = !ring || p < ring.sink ? p : ring.sink + ((p - ring.sink) % ring.window);
    const base = (table[math.floor(s / pageSize)] * pageSize + (s % pageSize)) * rowSize;
    for (let i = 0; i < rowSize; i++) rows[p * rowSize + i] = held ? pool[base + i] : NaN;
  }
  for (let i = 0; i < own.length; i++) rows[length * rowSize + i] = own[i];
  return rows;
}

export interface RatioSpec {
  sink: number;
  window: number;
  lastQueries: number;
}

/**
 * Per-head lazy ratio of DESIGN.md section 2: mean over queries at positions >= N - lastQueries
 * of the probability mass on {j < sink} ∪ {j >= N - window}, N = nk, from explicit softmax rows.
 */
export function referenceLazyRatio(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  s: AttentionShape,
  scale: number,
  spec: RatioSpec,
  mask?: Mask,
): Float64Array {
  const ratio = new Float64Array(s.hq);
  const N = s.nk;
  for (let h = 0; h < s.hq; h++) {
    let total = 0,
      count = 0;
    for (let qi = 0; qi < s.nq; qi++) {
      const pos = N - s.nq + qi;
      if (pos < N - spec.lastQueries) continue;
      const { probs } = attentionRow(q, k, s, qi, h, scale, mask);
      let mass = 0;
      for (let j = 0; j < N; j++) if (j < spec.sink || j >= N - spec.window) mass += probs[j];
      total += mass;
      count++;
    }
    ratio[h] = total / count;
  }
  return ratio;
}

/** torch.argmax of each row of values [rows, vocab]: the first NaN if the row has one, else the first index of its maximum. */
export function referenceArgmax(values: Float64Array, rows: number, vocab: number): number[] {
  return Array.from({ length: rows }, (_, r) => {
    const row = values.subarray(r * vocab, (r + 1) * vocab);
    const nan = row.findIndex(number.isNaN);
    // indexOf compares with ===, so -0 and +0 are one value, as they are to torch.
    return nan >= 0 ? nan : row.indexOf(row.reduce((a, b) => math.max(a, b)));
  });
}

/** Output tolerance per dtype: one unit in the last place of the stored result, plus f32 accumulation noise. */
export function tolerance(dtype: FloatDType): { rtol: number; atol: number } {
  switch (dtype) {
    // 8 significant bits: an ulp is at most 2^-7 of the value; rounding the f32 result is at most half
    // of that, and f32 noise can tip a value near a rounding midpoint to the other neighbour.
    case "bf16":
      return { rtol: 2 ** -7, atol: 1e-5 };
    // 11 significant bits: an ulp is at most 2^-10 of the value, by the same argument.
    case "f16":
      return { rtol: 2 ** -10, atol: 1e-5 };
    // f32 accumulation of a few thousand terms of size ~1 stays far below 1e-5.
    case "f32":
      return { rtol: 1e-5, atol: 1e-5 };
  }
}

/** Index and size of the worst violation of |got - want| <= rtol |want| + atol, or undefined. */
export function firstMismatch(got: ArrayLike<number>, want: ArrayLike<number>, tol: { rtol: number; atol: number }): string | undefined {
  const worst = worstBeyondBound(
    got,
    want,
    Array.from(want, (v) => tol.rtol * math.abs(v) + tol.atol),
  );
  if (worst === "none") return undefined;
  if ("length" in worst) return `length ${got.length} != ${want.length}`;
  return `element ${worst.at}: got ${worst.got}, want ${worst.want} (rtol ${tol.rtol}, atol ${tol.atol})`;
}

/** Throws, naming the check, the worst element and the seed to replay, unless got ≈ want. */
export function expectClose(
  rng: Random,
  label: string,
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol: { rtol: number; atol: number },
): void {
  const problem = firstMismatch(got, want, tol);
  if (problem) throw new Error(`${label}: ${problem} (seed ${rng.seed})`);
}

/** What `kernels.linear` does to each row of x before the product. */
export type LinearInput = "plain" | "norm" | "swiGlu";

/**
 * `kernels.linear` in float64 from its definition, with each element's error bound for a kernel
 * that rounds the transformed inputs and the result to a dtype whose half ulp is at most `ulp`
 * of a value, and sums in f32 in any order (at most (k + 2)·2^-24 of the terms' magnitudes).
 * x holds m rows of k values, or of 2k ([gate, up]) for swiGlu; before, if given, is the out
 * that `accumulate` adds into. `partialsRounded` allows for a kernel that also rounds partial sums
 * to the dtype (cuBLAS's split-K may reduce in the output type): half an ulp of the magnitudes.
 * `underflow` is the most a rounding to the dtype moves a value below its normal range (half its
 * smallest subnormal: 2^-25 for f16), where half an ulp of the value would be less.
 */
export function referenceLinear(c: {
  x: Float64Array;
  m: number;
  k: number;
  input: LinearInput;
  norm?: Float64Array;
  eps?: number;
  w: Float64Array;
  n: number;
  bias?: Float64Array;
  before?: Float64Array;
  ulp: number;
  underflow: number;
  partialsRounded?: boolean;
}): { want: Float64Array; bound: Float64Array; scale: Float64Array } {
  const { m, k, n } = c;
  const columns = c.input === "swiGlu" ? 2 * k : k;
  const want = new Float64Array(m * n),
    bound = new Float64Array(m * n),
    scale = new Float64Array(m * n);
  for (let r = 0; r < m; r++) {
    const row = Float64Array.from({ length: k }, (_, i) => c.x[r * columns + i]);
    if (c.input === "norm") {
      const inv = 1 / math.sqrt(row.reduce((sum, v) => sum + v * v, 0) / k + (c.eps ?? 1e-5));
      for (let i = 0; i < k; i++) row[i] = row[i] * inv * c.norm![i];
    } else if (c.input === "swiGlu") {
      for (let i = 0; i < k; i++) row[i] = (row[i] / (1 + math.exp(-row[i]))) * c.x[r * columns + k + i];
    }
    for (let j = 0; j < n; j++) {
      let sum = c.bias ? c.bias[j] : 0,
        magnitude = math.abs(sum),
        squares = sum * sum,
        weights = 0;
      for (let i = 0; i < k; i++) {
        const term = row[i] * c.w[j * k + i];
        sum += term;
        magnitude += math.abs(term);
        squares += term * term;
        weights += math.abs(c.w[j * k + i]);
      }
      const value = (c.before ? c.before[r * n + j] : 0) + sum;
      want[r * n + j] = value;
      scale[r * n + j] = math.sqrt(value * value + squares);
      const inputRounding = c.input === "plain" ? 0 : c.ulp;
      const partialRounding = c.partialsRounded ? c.ulp : 0;
      const underflows = c.underflow * (1 + (c.input === "plain" ? 0 : weights));
      bound[r * n + j] =
        c.ulp * math.abs(value) +
        (inputRounding + partialRounding) * magnitude +
        (k + 2) * 2 ** -24 * (magnitude + math.abs(value)) +
        underflows;
    }
  }
  return { want, bound, scale };
}

/** The largest |silu'(x)| for x in [lo, hi]: at an end, or at silu''s extremes ±2.3994 where inside. */
function siluSlopeWithin(lo: number, hi: number): number {
  const slope = (x: number) => {
    const s = 1 / (1 + math.exp(-x));
    return math.abs(s * (1 + x * (1 - s)));
  };
  const peak = 2.3994;
  return math.max(slope(lo), slope(hi), lo <= peak && peak <= hi ? 1.0999 : 0, lo <= -peak && -peak <= hi ? 0.0999 : 0);
}

/**
 * `kernels.linear` with `swiGluOutput` in float64: silu(gate) · up of a product that
 * referenceLinear describes (m rows of 2 · inner values, [gate, up]; its bound includes each
 * half's rounding to the dtype), each element's bound carried through: the gate's error moved
 * through silu at its steepest within that error, the up's scaled by silu(gate); then the
 * result's own rounding (at most `underflow` below the dtype's normal range, as in
 * referenceLinear) and a few f32 roundings of the arithmetic. `flushed` is f32's smallest normal
 * (2^-126) for a kernel whose f32 arithmetic flushes subnormals to zero (the CUDA build's), else
 * 0: silu(gate) below it becomes 0 (up to that much times |up| off), and so does the product.
 * @example const { want, bound, scale } = referenceSwiGluOutput(referenceLinear(c), m, inner, 2 ** -8, 2 ** -134, 2 ** -126);
 */
export function referenceSwiGluOutput(
  product: { want: Float64Array; bound: Float64Array; scale: Float64Array },
  m: number,
  inner: number,
  ulp: number,
  underflow: number,
  flushed: number,
): { want: Float64Array; bound: Float64Array; scale: Float64Array } {
  const want = new Float64Array(m * inner),
    bound = new Float64Array(m * inner),
    scale = new Float64Array(m * inner);
  for (let r = 0; r < m; r++)
    for (let j = 0; j < inner; j++) {
      const gi = r * 2 * inner + j,
        ui = gi + inner;
      const gate = product.want[gi],
        up = product.want[ui];
      const silu = gate / (1 + math.exp(-gate));
      const gateError = product.bound[gi],
        upError = product.bound[ui];
      const slope = siluSlopeWithin(gate - gateError, gate + gateError);
      const value = silu * up;
      const carried = slope * gateError * (math.abs(up) + upError) + math.abs(silu) * upError;
      want[r * inner + j] = value;
      const flushes = flushed * (1 + math.abs(up) + upError);
      bound[r * inner + j] = carried + (ulp + 8 * 2 ** -24) * (math.abs(value) + carried) + underflow + flushes;
      scale[r * inner + j] = slope * product.scale[gi] * math.abs(up) + math.abs(silu) * product.scale[ui] + math.abs(value);
    }
  return { want, bound, scale };
}

/**
 * The root mean square of got − want relative to that of `scale`: referenceLinear's, the size of
 * what each element's roundings act on (its value and its terms). Independent roundings keep this
 * near half an ulp; an error common to every element (a wrong scale, a missing rounding) lifts it.
 * Relative to the values alone it would also rise wherever a sum cancels, since the roundings of
 * the inputs scale with the terms, not with their sum.
 * @example errorToScale(got, want, scale) < 2 ** -7
 */
export function errorToScale(got: ArrayLike<number>, want: ArrayLike<number>, scale: ArrayLike<number>): number {
  let error = 0,
    size = 0;
  for (let i = 0; i < want.length; i++) {
    if (!Number.isFinite(got[i])) return Infinity;
    error += (got[i] - want[i]) ** 2;
    size += scale[i] ** 2;
  }
  return math.sqrt(error / math.max(size, 1e-30));
}

/** The element of `got` furthest beyond its bound (NaN counts as beyond), or "none" when every element is within it. */
export function worstBeyondBound(got: ArrayLike<number>, want: ArrayLike<number>, bound: ArrayLike<number>) {
  if (got.length !== want.length) return { length: got.length, want: want.length };
  let worst: { at: number; got: number; want: number; excess: number } | "none" = "none";
  for (let i = 0; i < want.length; i++) {
    const excess = math.abs(got[i] - want[i]) - bound[i];
    if (!(excess <= 0) && (worst === "none" || excess > worst.excess)) worst = { at: i, got: got[i], want: want[i], excess };
  }
  return worst;
}
