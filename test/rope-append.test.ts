// ropeAppendKv on the CPU: the same results as splitting a stacked q|k|v projection and
// running rope and appendKv on the parts (each checked against float64 in its own suite).
import { kernels, Tensor } from "../lib";
import { type FloatDType, Random } from "./helpers/reference";
import { TensorScope } from "./helpers/tensors";

const rng = new Random();
const scope = new TensorScope();
afterEach(() => scope.dispose());

/** Rows [tokens, width] of `a` taken from column `from` for `count` columns. */
function columns(a: Float32Array, tokens: number, width: number, from: number, count: number): Float32Array {
  const out = new Float32Array(tokens * count);
  for (let t = 0; t < tokens; t++) out.set(a.subarray(t * width + from, t * width + from + count), t * count);
  return out;
}

test.each([
  { tokens: 5, hq: 4, hkv: 2, d: 16, dtype: "f32" },
  { tokens: 3, hq: 8, hkv: 8, d: 6, dtype: "bf16" },
  { tokens: 7, hq: 6, hkv: 2, d: 32, dtype: "f16" },
] as Array<{ tokens: number; hq: number; hkv: number; d: number; dtype: FloatDType }>)(
  "tokens=$tokens hq=$hq hkv=$hkv d=$d $dtype equals split + rope + appendKv",
  ({ tokens, hq, hkv, d, dtype }) => {
    const width = (hq + 2 * hkv) * d,
      pageSize = 4,
      numPages = 5;
    const qkv = scope.random(rng, [tokens, width], dtype).tensor;
    const flat = qkv.toFloat32Array();
    const positions = scope.ints(Array.from({ length: tokens }, () => rng.int(0, 131071)));
    const invFreq = scope.add(
      Tensor.from(
        Float32Array.from({ length: d / 2 }, (_, i) => 1 / 500000 ** ((2 * i) / d)),
        [d / 2],
      ),
    );
    // Distinct slots, one token skipped; the pools start random so untouched slots show.
    const slotList = Array.from({ length: numPages * pageSize }, (_, i) => i)
      .sort(() => rng.int(0, 1) - 0.5)
      .slice(0, tokens);
    slotList[1] = -1;
    const slots = scope.ints(slotList);
    const pool = scope.random(rng, [numPages, pageSize, hkv, d], dtype).tensor;
    const pools = () => ({
      kPages: scope.add(Tensor.from(pool.toFloat32Array(), pool.shape, { dtype })),
      vPages: scope.add(Tensor.from(pool.toFloat32Array(), pool.shape, { dtype })),
    });

    const want = pools();
    const part = (from: number, heads: number) =>
      scope.add(Tensor.from(columns(flat, tokens, width, from, heads * d), [tokens, heads, d], { dtype }));
    const q = part(0, hq),
      k = part(hq * d, hkv),
      v = part((hq + hkv) * d, hkv);
    kernels.rope({ q, k, positions, invFreq });
    kernels.appendKv({ k, v, ...want, slots });

    const got = pools();
    const qGot = scope.add(kernels.ropeAppendKv({ qkv, positions, invFreq, ...got, slots }));
    expect(qGot.shape).toEqual([tokens, hq, d]);
    expect(Array.from(qGot.toArray())).toEqual(Array.from(q.toArray()));
    expect(Array.from(got.kPages.toArray())).toEqual(Array.from(want.kPages.toArray()));
    expect(Array.from(got.vPages.toArray())).toEqual(Array.from(want.vPages.toArray()));
  },
);

test("ropeAppendKv rejects slots outside the pool and a qkv that does not match the pool", () => {
  const kPages = scope.random(rng, [2, 4, 1, 8], "f32").tensor,
    vPages = scope.random(rng, [2, 4, 1, 8], "f32").tensor;
  const qkv = scope.random(rng, [2, 4 * 8], "f32").tensor;
  const invFreq = scope.add(Tensor.from(new Float32Array(4).fill(0.5), [4]));
  const base = { qkv, kPages, vPages, invFreq, positions: scope.ints([0, 1]) };
  expect(() => kernels.ropeAppendKv({ ...base, slots: scope.ints([0, 8]) })).toThrow(
    /ropeAppendKv: slots\[1\] = 8 is outside the pool's slots 0..7 \(page \* pageSize \+ offset; -1 skips the token\)/,
  );
  // q is made in qkv's dtype, so a qkv unlike the pool is named, not the q the user never gave.
  expect(() => kernels.ropeAppendKv({ ...base, qkv: scope.random(rng, [2, 4 * 8], "bf16").tensor, slots: scope.ints([0, 1]) })).toThrow(
    /ropeAppendKv: qkv must be f32, got bf16/,
  );
  const odd = scope.random(rng, [2, 5 * 8 + 1], "f32").tensor;
  expect(() => kernels.ropeAppendKv({ ...base, qkv: odd, slots: scope.ints([0, 1]) })).toThrow(
    /qkv's last dimension 41 is not \(hq \+ 2·1\)·8/,
  );
});

// linear's ropeAppendKv output: the stacked projection's product goes through ropeAppendKv
// without being stored; the same q and pool as the plain product followed by ropeAppendKv (which
// the CPU op is, so what this checks is the binding's reading of hq, the pool and the indices).
test.each([
  { tokens: 3, hq: 4, hkv: 2, d: 16, dtype: "f32", input: "norm" },
  { tokens: 2, hq: 6, hkv: 3, d: 6, dtype: "bf16", input: "plain" },
] as Array<{ tokens: number; hq: number; hkv: number; d: number; dtype: FloatDType; input: "norm" | "plain" }>)(
  "linear with ropeAppendKv, tokens=$tokens hq=$hq hkv=$hkv d=$d $dtype, input $input: linear then ropeAppendKv",
  ({ tokens, hq, hkv, d, dtype, input }) => {
    const hidden = 8 * rng.int(1, 6),
      pageSize = 4,
      numPages = 3;
    const x = scope.random(rng, [tokens, hidden], dtype).tensor;
    const weight = scope.random(rng, [(hq + 2 * hkv) * d, hidden], "bf16").tensor;
    const bias = scope.random(rng, [(hq + 2 * hkv) * d], "bf16").tensor;
    const norm = input === "norm" ? { weight: scope.random(rng, [hidden], "bf16").tensor, eps: 1e-5 } : undefined;
    const positions = scope.ints(Array.from({ length: tokens }, () => rng.int(0, 131071)));
    const invFreq = scope.add(
      Tensor.from(
        Float32Array.from({ length: d / 2 }, (_, i) => 1 / 10000 ** ((2 * i) / d)),
        [d / 2],
      ),
    );
    const slots = scope.ints(Array.from({ length: tokens }, (_, t) => (t === 1 ? -1 : numPages * pageSize - 1 - t)));
    const pool = scope.random(rng, [numPages, pageSize, hkv, d], dtype).tensor;
    const pools = () => ({
      kPages: scope.add(Tensor.from(pool.toFloat32Array(), pool.shape, { dtype })),
      vPages: scope.add(Tensor.from(pool.toFloat32Array(), pool.shape, { dtype })),
    });
    const want = pools();
    const qkv = scope.add(kernels.linear({ x, weight, bias, norm }));
    const qWant = scope.add(kernels.ropeAppendKv({ qkv, positions, invFreq, ...want, slots }));
    const got = pools();
    const q = scope.add(Tensor.empty([tokens, hq, d], dtype));
    expect(kernels.linear({ x, weight, bias, norm, out: q, ropeAppendKv: { positions, invFreq, ...got, slots } })).toBe(q);
    expect(Array.from(q.toArray())).toEqual(Array.from(qWant.toArray()));
    expect(Array.from(got.kPages.toArray())).toEqual(Array.from(want.kPages.toArray()));
    expect(Array.from(got.vPages.toArray())).toEqual(Array.from(want.vPages.toArray()));
  },
);

test("linear refuses a ropeAppendKv output it cannot mean, and leaves q and the pool as they were", () => {
  const hq = 2,
    hkv = 1,
    d = 8;
  const kPages = scope.random(rng, [2, 4, hkv, d], "f32").tensor,
    vPages = scope.random(rng, [2, 4, hkv, d], "f32").tensor;
  const x = scope.random(rng, [2, 16], "f32").tensor,
    weight = scope.random(rng, [(hq + 2 * hkv) * d, 16], "f32").tensor,
    q = scope.random(rng, [2, hq, d], "f32").tensor;
  const invFreq = scope.add(Tensor.from(new Float32Array(d / 2).fill(0.5), [d / 2]));
  const rope = { kPages, vPages, invFreq, positions: scope.ints([0, 1]), slots: scope.ints([0, 1]) };
  const before = [q, kPages, vPages].map((t) => Array.from(t.toFloat32Array()));
  const refused: Array<[Partial<Parameters<typeof kernels.linear>[0]>, RegExp]> = [
    [{ out: undefined }, /ropeAppendKv rotates the query heads into out, so out \(q\) must be given/],
    [{ accumulate: true }, /ropeAppendKv cannot be combined with swiGluOutput or accumulate/],
    [{ swiGluOutput: true }, /ropeAppendKv cannot be combined with swiGluOutput or accumulate/],
    [
      { weight: scope.random(rng, [40, 16], "f32").tensor },
      /the weight's rows must be the q\|k\|v heads, \(hq \+ 2 hkv\) · d = 32 .* got 40/,
    ],
    [{ x: scope.random(rng, [3, 16], "f32").tensor }, /x must be \[tokens, 16\] with a row per token of out \(2\)/],
    [{ ropeAppendKv: { ...rope, slots: scope.ints([0, 8]) } }, /slots\[1\] = 8 is outside the pool's slots 0..7/],
    [{ ropeAppendKv: { ...rope, positions: scope.ints([0]) } }, /positions must have shape \[2\]/],
    [{ out: scope.random(rng, [2, 16], "f32").tensor }, /linear ropeAppendKv: out \(q\) must have 3 dimensions, got shape \[2, 16\]/],
    [{ ropeAppendKv: { ...rope, kPages: x } }, /linear ropeAppendKv: kPages must have 4 dimensions, got shape \[2, 16\]/],
    [{ out: scope.add(kPages.rows(0, 1).reshape([2, hq, d])) }, /the K\/V pool overlaps out: give the pool tensors of their own/],
  ];
  for (const [options, message] of refused) {
    expect(() => kernels.linear({ x, weight, out: q, ropeAppendKv: rope, ...options })).toThrow(message);
    expect([q, kPages, vPages].map((t) => Array.from(t.toFloat32Array()))).toEqual(before);
  }
});
