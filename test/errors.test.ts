// Bad input never crashes the process: every case throws (or rejects) a JS Error that says
// what was wrong, and the addon keeps working afterwards.
import { kernels, streamingDefaults, Tensor } from "../lib";
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
    const qi = scope.ints(
      Array.from({ length: 16 }, (_, i) => i),
      [2, 1, 8],
    );
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
    expect(() => kernels.prefillAttention({ ...args, lazyRatio: { sink: 4, window: 4, lastQueries: 0 } })).toThrow(
      /lastQueries must be in \[1, /,
    );
    expect(() => kernels.prefillAttention({ ...args, scale: -1 })).toThrow(/scale must be a finite number > 0/);
  });
  test("the lazy ratio needs the last queries in the call", () => {
    expect(() =>
      kernels.prefillAttention({ q: t([4, 2, 8]), k: t([40, 2, 8]), v: t([40, 2, 8]), lazyRatio: { sink: 4, window: 16, lastQueries: 8 } }),
    ).toThrow(/needs the last 8 queries in this call, but q has only 4/);
  });
  describe("a cached prefix read through the page table", () => {
    // A pool of 4 pages of 4 slots, 2 kv heads of dim 8; q [3, 4, 8] after 5 cached positions.
    const prefix = (over: Partial<kernels.CachedPrefixOptions> = {}) => ({
      ...pool(),
      pageTable: scope.ints([2, 0]),
      length: 5,
      ...over,
    });
    const call = (over: Partial<kernels.CachedPrefixOptions> = {}, extra: Partial<kernels.PrefillAttentionOptions> = {}) =>
      kernels.prefillAttention({ q: t([3, 4, 8]), k: t([3, 2, 8]), v: t([3, 2, 8]), cached: prefix(over), ...extra });
    test("a page outside the pool", () => {
      expect(() => call({ pageTable: scope.ints([2, 4]) })).toThrow(/pageTable entry 1 is page 4, outside the pool's pages 0..3/);
      expect(() => call({ pageTable: scope.ints([-1, 0]) })).toThrow(/pageTable entry 0 is page -1/);
    });
    test("a table too short for the cached length", () => {
      expect(() => call({ length: 9 })).toThrow(/pageTable has 2 pages but 9 cached slots need 3 of 4 slots/);
      expect(() => call({ length: -1 })).toThrow(/cached: length must be in \[0, /);
      expect(() => call({ length: 2.5 })).toThrow(/length must be an integer/);
    });
    test("a ring needs a streaming mask it holds every position of", () => {
      const ring = { sink: 2, window: 4 };
      expect(() => call({ ring })).toThrow(/holds only its sinks and its last window positions; pass streaming/);
      expect(() => call({ ring }, { streaming: { sink: 2, window: 5 } })).toThrow(/holds only its sinks/);
      expect(() => call({ ring: { sink: 2, window: 0 } }, { streaming: ring })).toThrow(/ringWindow must be in \[1, /);
      expect(() => call({ ring: { sink: 2 } as never }, { streaming: ring })).toThrow(/ringSink and ringWindow go together/);
      const ok = call({ ring }, { streaming: ring });
      expect(ok.out.shape).toEqual([3, 4, 8]);
      scope.add(ok.out);
    });
    test("a ring that has turned: the queries' windows must start within what it still holds", () => {
      const ring = { sink: 2, window: 4 };
      // 9 cached positions: the ring holds 0-1 and 5-8. Queries on cached positions 6-8 would
      // read 3-4, which it has overwritten.
      const cachedOnly = (tokens: number) =>
        kernels.prefillAttention({ q: t([tokens, 4, 8]), cached: prefix({ ring, length: 9 }), streaming: ring });
      expect(() => cachedOnly(3)).toThrow(
        /q's first token is position 6, whose window starts at 3, but the ring holds positions from 5 on \(besides its sinks\); pass at most 1 queries/,
      );
      scope.add(cachedOnly(1).out);
      // The usual call: the queries are the call's own tokens, after the cached ones.
      scope.add(call({ ring, length: 9 }, { streaming: ring }).out);
    });
    test("a pool that does not match the call", () => {
      expect(() => call({ ...pool(4, 4, 1, 8) })).toThrow(/kPages holds 1 kv heads of dim 8 but the call has 2 of dim 8/);
      expect(() => call({ ...pool(4, 4, 2, 8, "bf16") })).toThrow(/kPages must be f32, got bf16/);
      expect(() => call({ vPages: t([4, 4, 2, 16]) })).toThrow(/vPages must have shape \[4, 4, 2, 8\]/);
      expect(() => call({ pageTable: t([2]) })).toThrow(/pageTable must be i32, got f32/);
      expect(() => call({ pageTable: scope.ints([0, 1], [1, 2]) })).toThrow(/pageTable/);
    });
    test("own keys go in pairs, and queries are the last positions", () => {
      const q = t([3, 4, 8]);
      expect(() => kernels.prefillAttention({ q, k: t([3, 2, 8]), cached: prefix() })).toThrow(/k and v go together/);
      expect(() => kernels.prefillAttention({ q: t([6, 4, 8]), cached: prefix() })).toThrow(
        /only 5 keys: queries are the last nq positions/,
      );
      expect(() =>
        kernels.prefillAttention({ q: t([3, 4, 8]), k: t([3, 2, 8]), v: t([3, 2, 8]), cached: { ...prefix(), kPages: 3 as never } }),
      ).toThrow(/cached.kPages must be a Tensor/);
    });
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

describe("the lazy ratio's sink, window and lastQueries are required: the kernels apply no defaults", () => {
  const spec = { sink: 2, window: 3, lastQueries: 2 };
  const fields = Object.keys(spec) as Array<keyof typeof spec>;
  const without = (field: keyof typeof spec) => Object.fromEntries(Object.entries(spec).filter(([k]) => k !== field)) as typeof spec;
  const attention = () => ({ q: t([4, 2, 8]), k: t([6, 2, 8]), v: t([6, 2, 8]) });
  const ratioInputs = () => ({ q: t([4, 2, 8]), k: t([6, 2, 8]), lse: t([4, 2]) });

  test.each(fields)("prefillAttention without lazyRatio.%s", (field) => {
    expect(() => kernels.prefillAttention({ ...attention(), lazyRatio: without(field) })).toThrow(
      new RegExp(`prefillAttention ratio: ${field} is required`),
    );
    expect(() => kernels.prefillAttention({ ...attention(), lazyRatio: { ...spec, [field]: null as never } })).toThrow(
      new RegExp(`${field} is required`),
    );
  });
  test.each(fields)("lazyRatio without %s, sync and async", async (field) => {
    expect(() => kernels.lazyRatio({ ...ratioInputs(), ...without(field) })).toThrow(
      new RegExp(`lazyRatio: ${field} is required \\(an integer\\)`),
    );
    await expect(kernels.lazyRatioAsync({ ...ratioInputs(), ...without(field) })).rejects.toThrow(
      new RegExp(`lazyRatio: ${field} is required`),
    );
  });
  test("the addon itself refuses a ratio without its fields", () => {
    const q = t([4, 2, 8]),
      k = t([6, 2, 8]),
      lse = t([4, 2]),
      out = scope.add(Tensor.empty([2], "f32"));
    const native = loadAddon();
    for (const field of fields)
      expect(() => native.lazyRatio({ q: q.handle, k: k.handle, lse: lse.handle, out: out.handle, ...without(field) })).toThrow(
        new RegExp(`lazyRatio: ${field} is required`),
      );
  });
  test("lazyRatio: true is the default shape, which TypeScript fills in", () => {
    // Longer than sink + window, so the ratio depends on the shape.
    const n = 1100,
      x = () => t([n, 2, 8]);
    const args = { q: x(), k: x(), v: x() };
    const ratio = (lazyRatio: kernels.LazyRatioOptions | true) =>
      Array.from(scope.add(kernels.prefillAttention({ ...args, lazyRatio }).lazyRatio!).toFloat32Array());
    expect(ratio(true)).toEqual(ratio({ ...streamingDefaults }));
    expect(ratio(true)).not.toEqual(ratio({ ...streamingDefaults, window: 100 }));
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
    expect(() =>
      kernels.cutToStreaming({ ...p, srcPageTable: scope.ints([0, 1]), dstPageTable: src, length: 20, sink: 4, window: 8 }),
    ).toThrow(/srcPageTable has 2 pages but a cache of 20 tokens needs 5/);
    expect(() =>
      kernels.cutToStreaming({ ...p, srcPageTable: src, dstPageTable: scope.ints([0, 9, 1]), length: 20, sink: 4, window: 8 }),
    ).toThrow(/dstPageTable entry 1 is page 9/);
    expect(() =>
      kernels.cutToStreaming({ ...p, srcPageTable: src, dstPageTable: scope.ints([2, 5, 2]), length: 20, sink: 4, window: 8 }),
    ).toThrow(/dstPageTable lists page 2 twice \(entry 2\); a ring's pages are distinct/);
    expect(() => kernels.cutToStreaming({ ...p, srcPageTable: src, dstPageTable: src, length: 20, sink: 4, window: 0 })).toThrow(
      /window must be in \[1, /,
    );
  });
});

describe("async kernels reject instead of throwing, and the process keeps working", () => {
  test("validation errors reject the promise", async () => {
    await expect(kernels.prefillAttentionAsync({ q: t([4, 3, 8]), k: t([4, 2, 8]), v: t([4, 2, 8]) })).rejects.toThrow(/not a multiple/);
    const p = pool();
    await expect(kernels.appendKvAsync({ k: t([1, 2, 8]), v: t([1, 2, 8]), ...p, slots: scope.ints([99]) })).rejects.toThrow(
      /slots\[0\] = 99/,
    );
    // And a good call still works after the failures.
    const { out } = await kernels.prefillAttentionAsync({ q: t([4, 2, 8]), k: t([4, 2, 8]), v: t([4, 2, 8]) });
    expect(out.toFloat32Array().every(Number.isFinite)).toBe(true);
    out.dispose();
  });
  test("what an option's getter throws rejects the addon's promise as it was thrown, not as an empty Error", async () => {
    const addon = loadAddon();
    for (const thrown of [undefined, 7, Symbol("own"), "text", new RangeError("own")]) {
      const options = {
        get q(): never {
          throw thrown;
        },
        k: t([4, 2, 8]).handle,
        v: t([4, 2, 8]).handle,
      };
      await expect(addon.prefillAttentionAsync(options as never)).rejects.toBe(thrown);
    }
  });
  test("an aborted signal rejects before the kernel runs", async () => {
    const controller = new AbortController();
    controller.abort(new Error("stop"));
    await expect(
      kernels.prefillAttentionAsync({ q: t([4, 2, 8]), k: t([4, 2, 8]), v: t([4, 2, 8]) }, { signal: controller.signal }),
    ).rejects.toThrow(/stop/);
  });
});
