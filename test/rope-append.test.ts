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
  const odd = scope.random(rng, [2, 5 * 8 + 1], "f32").tensor;
  expect(() => kernels.ropeAppendKv({ ...base, qkv: odd, slots: scope.ints([0, 1]) })).toThrow(
    /qkv's last dimension 41 is not \(hq \+ 2·1\)·8/,
  );
});
