// Bad input never crashes the process: every case throws (or rejects) a JS Error that says
// what was wrong, and the addon keeps working afterwards.
import { kernels, Tensor } from "../lib";
import { loadAddon } from "../lib/runtime/native";
import { Random } from "./helpers/reference";
import { TensorScope } from "./helpers/tensors";

const rng = new Random();
const scope = new TensorScope();
afterEach(() => scope.dispose());

function t(shape: number[], dtype: "f32" | "bf16" | "f16" = "f32") {
  return scope.random(rng, shape, dtype).tensor;
}

function pool(numPages = 4, pageSize = 4, hkv = 2, d = 8, dtype: "f32" | "bf16" = "f32") {
  return { kPages: t([numPages, pageSize, hkv, d], dtype), vPages: t([numPages, pageSize, hkv, d], dtype) };
}

describe("prefillAttention rejects bad input", () => {
  test("shape mismatch between k and v", () => {
    expect(() => kernels.prefillAttention({ q: t([4, 2, 8]), k: t([4, 2, 8]), v: t([5, 2, 8]) })).toThrow(
      /prefillAttention: v must have shape \[4, 2, 8\], got \[5, 2, 8\]/,
    );
  });
  test("head dims differ", () => {
    expect(() => kernels.prefillAttention({ q: t([4, 2, 8]), k: t([4, 2, 16]), v: t([4, 2, 16]) })).toThrow(/head dim 16 differs/);
  });
  test("heads not a multiple (GQA)", () => {
    expect(() => kernels.prefillAttention({ q: t([4, 3, 8]), k: t([4, 2, 8]), v: t([4, 2, 8]) })).toThrow(/not a multiple/);
  });
  test("more queries than keys", () => {
    expect(() => kernels.prefillAttention({ q: t([5, 2, 8]), k: t([4, 2, 8]), v: t([4, 2, 8]) })).toThrow(/nq <= nk/);
  });
  test("dtype mismatch", () => {
    expect(() => kernels.prefillAttention({ q: t([4, 2, 8], "bf16"), k: t([4, 2, 8]), v: t([4, 2, 8]) })).toThrow(
      /k must be bf16, got f32/,
    );
  });
  test("integer tensors are not attention inputs", () => {
    const qi = scope.ints(Array.from({ length: 16 }, (_, i) => i), [2, 1, 8]);
    expect(() => kernels.prefillAttention({ q: qi, k: t([2, 1, 8]), v: t([2, 1, 8]) })).toThrow(/q must be f32, f16 or bf16/);
  });
  test("wrong rank", () => {
    expect(() => kernels.prefillAttention({ q: t([4, 16]), k: t([4, 2, 8]), v: t([4, 2, 8]) })).toThrow(/\[nq, hq, d\]/);
  });
  test("zero or negative streaming sizes", () => {
    const args = { q: t([4, 2, 8]), k: t([4, 2, 8]), v: t([4, 2, 8]) };
    expect(() => kernels.prefillAttention({ ...args, streaming: { sink: 4, window: 0 } })).toThrow(/window must be in \[1, /);
    expect(() => kernels.prefillAttention({ ...args, streaming: { sink: -1, window: 4 } })).toThrow(/sink must be in \[0, /);
    expect(() => kernels.prefillAttention({ ...args, streaming: { sink: 1.5, window: 4 } })).toThrow(/sink must be an integer/);
    expect(() => kernels.prefillAttention({ ...args, lazyRatio: { lastQueries: 0 } })).toThrow(/lastQueries must be in \[1, /);
    expect(() => kernels.prefillAttention({ ...args, scale: -1 })).toThrow(/scale must be a finite number > 0/);
  });
  test("the lazy ratio needs the last queries in the call", () => {
    expect(() =>
      kernels.prefillAttention({ q: t([4, 2, 8]), k: t([40, 2, 8]), v: t([40, 2, 8]), lazyRatio: { lastQueries: 8 } }),
    ).toThrow(/needs the last 8 queries in this call, but q has only 4/);
  });
  test("a disposed tensor", () => {
    const q = t([4, 2, 8]);
    q.dispose();
    expect(() => kernels.prefillAttention({ q, k: t([4, 2, 8]), v: t([4, 2, 8]) })).toThrow(/q is a disposed tensor/);
  });
  test("a wrong preallocated output", () => {
    expect(() => kernels.prefillAttention({ q: t([4, 2, 8]), k: t([4, 2, 8]), v: t([4, 2, 8]), out: t([4, 2, 9]) })).toThrow(
      /out must have shape \[4, 2, 8\]/,
    );
  });
  test("not a tensor", () => {
    expect(() => kernels.prefillAttention({ q: {} as Tensor, k: t([4, 2, 8]), v: t([4, 2, 8]) })).toThrow(/q must be a Tensor/);
    // The addon itself, called with what its types forbid (plain JS callers can), checks too.
    const native = loadAddon();
    // @ts-expect-error numbers instead of tensors
    expect(() => native.prefillAttention({ q: 1, k: 2, v: 3, out: 4 })).toThrow(/prefillAttention: q must be a Tensor/);
    // @ts-expect-error no arguments at all
    expect(() => native.prefillAttention({})).toThrow(/q is required/);
  });
});

describe("decodeAttention rejects bad input", () => {
  const base = () => ({ q: t([2, 4, 8]), ...pool(), seqLens: scope.ints([5, 3]), pageTable: scope.ints([0, 1, 2, 3], [2, 2]) });
  test("a page table index out of range", () => {
    expect(() => kernels.decodeAttention({ ...base(), seqLens: scope.ints([5, 6]), pageTable: scope.ints([0, 1, 2, 4], [2, 2]) })).toThrow(
      /pageTable\[1\] entry 1 is page 4, outside the pool's pages 0..3/,
    );
    expect(() => kernels.decodeAttention({ ...base(), pageTable: scope.ints([0, -1, 2, 3], [2, 2]) })).toThrow(/is page -1/);
  });
  test("unused page-table columns are not checked", () => {
    const { out } = kernels.decodeAttention({ ...base(), seqLens: scope.ints([4, 3]), pageTable: scope.ints([0, 99, 2, -7], [2, 2]) });
    scope.add(out);
  });
  test("a length beyond the page table", () => {
    expect(() => kernels.decodeAttention({ ...base(), seqLens: scope.ints([9, 3]) })).toThrow(/seqLens\[0\] = 9 is outside 0..8/);
    expect(() => kernels.decodeAttention({ ...base(), seqLens: scope.ints([-1, 3]) })).toThrow(/seqLens\[0\] = -1/);
  });
  test("page table of the wrong dtype or row count", () => {
    expect(() => kernels.decodeAttention({ ...base(), pageTable: t([2, 2]) })).toThrow(/pageTable must be i32, got f32/);
    expect(() => kernels.decodeAttention({ ...base(), pageTable: scope.ints([0, 1], [1, 2]) })).toThrow(/pageTable has 1 rows/);
  });
  test("pool of another dtype or head dim", () => {
    expect(() => kernels.decodeAttention({ ...base(), ...pool(4, 4, 2, 8, "bf16") })).toThrow(/kPages must be f32, got bf16/);
    expect(() => kernels.decodeAttention({ ...base(), ...pool(4, 4, 2, 16) })).toThrow(/head dim 16 differs/);
  });
});

describe("cache operations reject bad input", () => {
  test("append to a slot outside the pool", () => {
    const p = pool();
    expect(() => kernels.appendKv({ k: t([2, 2, 8]), v: t([2, 2, 8]), ...p, slots: scope.ints([3, 16]) })).toThrow(
      /slots\[1\] = 16 is outside the pool's slots 0..15 \(page \* pageSize \+ offset; -1 skips the token\)/,
    );
  });
  test("append rows of the wrong shape", () => {
    expect(() => kernels.appendKv({ k: t([2, 3, 8]), v: t([2, 3, 8]), ...pool(), slots: scope.ints([0, 1]) })).toThrow(
      /k must have shape \[2, 2, 8\]/,
    );
    expect(() => kernels.appendKv({ k: t([2, 2, 8]), v: t([2, 2, 8]), ...pool(), slots: scope.ints([0]) })).toThrow(
      /slots must have shape \[2\]/,
    );
  });
  test("cut with too few pages or an out-of-range page", () => {
    const p = pool(8);
    const src = scope.ints([0, 1, 2, 3, 4]);
    expect(() => kernels.cutToStreaming({ ...p, srcPageTable: scope.ints([0, 1]), dstPageTable: src, length: 20, sink: 4, window: 8 }))
      .toThrow(/srcPageTable has 2 pages but a cache of 20 tokens needs 5/);
    expect(() => kernels.cutToStreaming({ ...p, srcPageTable: src, dstPageTable: scope.ints([0, 9, 1]), length: 20, sink: 4, window: 8 }))
      .toThrow(/dstPageTable entry 1 is page 9/);
    expect(() => kernels.cutToStreaming({ ...p, srcPageTable: src, dstPageTable: src, length: 20, sink: 4, window: 0 }))
      .toThrow(/window must be in \[1, /);
  });
});

describe("async kernels reject instead of throwing, and the process keeps working", () => {
  test("validation errors reject the promise", async () => {
    await expect(kernels.prefillAttentionAsync({ q: t([4, 3, 8]), k: t([4, 2, 8]), v: t([4, 2, 8]) })).rejects.toThrow(/not a multiple/);
    const p = pool();
    await expect(kernels.appendKvAsync({ k: t([1, 2, 8]), v: t([1, 2, 8]), ...p, slots: scope.ints([99]) })).rejects.toThrow(/slots\[0\] = 99/);
    // And a good call still works after the failures.
    const { out } = await kernels.prefillAttentionAsync({ q: t([4, 2, 8]), k: t([4, 2, 8]), v: t([4, 2, 8]) });
    expect(out.toFloat32Array().every(Number.isFinite)).toBe(true);
    out.dispose();
  });
  test("an aborted signal rejects before the kernel runs", async () => {
    const controller = new AbortController();
    controller.abort(new Error("stop"));
    await expect(
      kernels.prefillAttentionAsync({ q: t([4, 2, 8]), k: t([4, 2, 8]), v: t([4, 2, 8]) }, { signal: controller.signal }),
    ).rejects.toThrow(/stop/);
  });
});
