// Defects: the kernel wrappers read truthiness where they meant "given": a non-Tensor optional
// tensor (residual: [], lse: 5) was ignored or handed back as a result, and lse: NaN or
// returnLse: "yes" read as "not asked for" or "asked for"; they read an option more than once
// (rope's positions), so a getter could make the checked value differ from the one that ran; and
// Tensor.from took a bare dtype string for options and ignored it. Options are now read once into
// a plain object, optional tensors are undefined or a Tensor, and flags are booleans.
import { kernels, memoryUsage, Tensor } from "../../lib";
import { addon } from "../../lib/runtime/native";
import { builders, kernelNames, Maker, optionsOf } from "../fuzz/cases/kernel-builders";
import { Random } from "../helpers/reference";

const rng = new Random();

const notTensors: unknown[] = [[], 5, 4294967301, NaN, "tensor", null, {}, 0, false, { handle: {} }];

/** A valid call of every kernel, with fresh random shapes and contents. */
function everyKernel(dtype: "f32" | "bf16" = "f32") {
  const maker = new Maker(rng);
  return { maker, calls: kernelNames.map((name) => ({ name, built: builders[name](maker, dtype) })) };
}

/** Valid decodeAttention arguments: one query over a 5-token paged cache. */
function decodeArgs(maker: Maker) {
  const pool = maker.floats([2, 4, 2, 8], "f32");
  return { q: maker.floats([1, 2, 8], "f32"), kPages: pool, vPages: pool, pageTable: maker.ints([0, 1], [1, 2]), seqLens: maker.ints([5]) };
}

describe(`seed ${rng.seed}`, () => {
  test("the reported cases: a non-Tensor optional tensor is refused, naming the argument", () => {
    const maker = new Maker(rng);
    const x = maker.floats([3, 8], "f32"),
      weight = maker.floats([8], "f32"),
      q = maker.floats([4, 2, 8], "f32");
    expect(() => kernels.rmsNorm({ x, weight, residual: [] as never })).toThrow(/rmsNorm: residual must be a Tensor, or undefined/);
    expect(() => kernels.prefillAttention({ q, k: q, v: q, lse: 5 as never })).toThrow(/prefillAttention: lse must be a Tensor/);
    expect(() => kernels.prefillAttention({ q, k: q, v: q, lazyRatioOut: 4294967301 as never })).toThrow(/lazyRatioOut must be a Tensor/);
    const decode = decodeArgs(maker);
    expect(() => kernels.decodeAttention({ ...decode, lse: "tensor" as never })).toThrow(/decodeAttention: lse must be a Tensor/);
    maker.disposeAll();
  });

  test("every optional or output tensor of every kernel refuses anything but undefined or a Tensor", () => {
    const { maker, calls } = everyKernel();
    let checked = 0;
    for (const { name, built } of calls) {
      for (const arg of built.args.filter((a) => a.output || a.optional)) {
        for (const value of notTensors) {
          const options = { ...optionsOf(built), [arg.name]: value };
          expect(() => built.call(options)).toThrow(new RegExp(`${name}: ${arg.name} must be a Tensor`));
          checked++;
        }
        // Left out (undefined), the same call still runs.
        expect(() => built.call({ ...optionsOf(built), [arg.name]: undefined })).not.toThrow();
      }
    }
    expect(checked).toBeGreaterThan(8 * notTensors.length);
    maker.disposeAll();
  });

  test("want-this-output flags take booleans only: lse: NaN or returnLse: 'yes' is an error, not a guess", () => {
    const maker = new Maker(rng);
    const q = maker.floats([4, 2, 8], "f32");
    for (const value of [NaN, 0, 1, "yes", "", null, {}]) {
      expect(() => kernels.prefillAttention({ q, k: q, v: q, returnLse: value as never })).toThrow(
        /returnLse must be true, false or undefined/,
      );
      expect(() => kernels.prefillAttention({ q, k: q, v: q, lse: value as never })).toThrow(/lse must be a Tensor/);
      // An object, {} included, is the lazy-ratio settings (defaults for what it leaves out).
      if (typeof value !== "object" || value === null)
        expect(() => kernels.prefillAttention({ q, k: q, v: q, lazyRatio: value as never })).toThrow(
          /lazyRatio must be true, false, undefined or \{/,
        );
    }
    const decode = decodeArgs(maker);
    expect(() => kernels.decodeAttention({ ...decode, returnLse: NaN as never })).toThrow(
      /decodeAttention: returnLse must be true, false or undefined/,
    );
    // The documented forms keep working: false and undefined ask for nothing, true for the output.
    expect(kernels.prefillAttention({ q, k: q, v: q, returnLse: false, lazyRatio: false }).lse).toBeUndefined();
    const asked = kernels.prefillAttention({ q, k: q, v: q, returnLse: true, lazyRatio: true });
    expect(asked.lse?.shape).toEqual([4, 2]);
    expect(asked.lazyRatio?.shape).toEqual([2]);
    expect(kernels.decodeAttention({ ...decode, returnLse: true }).lse?.shape).toEqual([1, 2]);
    maker.disposeAll();
  });

  test("rope runs with the positions it checked, even when a getter answers differently the second time", () => {
    const maker = new Maker(rng);
    const tokens = 3,
      d = 8;
    const q = maker.floats([tokens, 2, d], "f32"),
      k = maker.floats([tokens, 1, d], "f32"),
      invFreq = maker.floats([d / 2], "f32");
    const first = maker.ints([rng.int(0, 99), rng.int(100, 199), rng.int(200, 299)]);
    const later = maker.ints([rng.int(1000, 1999), rng.int(2000, 2999), rng.int(3000, 3999)]);
    const qWant = Tensor.from(q.toFloat32Array(), q.shape),
      kWant = Tensor.from(k.toFloat32Array(), k.shape);
    kernels.rope({ q: qWant, k: kWant, positions: first, invFreq });
    let reads = 0;
    kernels.rope({
      q,
      k,
      invFreq,
      get positions() {
        return reads++ === 0 ? first : later;
      },
    });
    expect(reads).toBe(1);
    expect(Array.from(q.toFloat32Array())).toEqual(Array.from(qWant.toFloat32Array()));
    expect(Array.from(k.toFloat32Array())).toEqual(Array.from(kWant.toFloat32Array()));
    for (const x of [qWant, kWant]) x.dispose();
    maker.disposeAll();
  });

  /** Options (and nested option objects) that count how often each key is read. */
  function counting(options: Record<string, unknown>, reads: Map<string, number>, prefix = ""): Record<string, unknown> {
    return new Proxy(options, {
      get(target, key, receiver) {
        const value = Reflect.get(target, key, receiver);
        if (typeof key !== "string") return value;
        const path = prefix + key;
        reads.set(path, (reads.get(path) ?? 0) + 1);
        const plain = value && typeof value === "object" && !(value instanceof Tensor) && !Array.isArray(value);
        return plain ? counting(value as Record<string, unknown>, reads, `${path}.`) : value;
      },
    });
  }

  test("every kernel wrapper, sync and async, reads each option at most once", async () => {
    const { maker, calls } = everyKernel("bf16");
    const wrappers = kernels as unknown as Record<string, ((o: object) => unknown) | undefined>;
    for (const { name } of calls) expect(typeof wrappers[name]).toBe("function");
    for (const { name, built } of calls) {
      for (const run of [wrappers[name], wrappers[`${name}Async`]].filter((f) => f !== undefined)) {
        const reads = new Map<string, number>();
        await run(counting(optionsOf(built), reads));
        const twice = [...reads].filter(([, n]) => n > 1).map(([key, n]) => `${name}.${key} read ${n} times`);
        expect(twice).toEqual([]);
        expect(reads.size).toBeGreaterThan(0);
      }
    }
    maker.disposeAll();
  });

  test("Tensor.from refuses options that are not an object instead of ignoring them", () => {
    const data = Float32Array.from({ length: 4 }, () => rng.next() + 0.5);
    for (const options of ["bf16", 5, null, ["bf16"], true]) {
      expect(() => Tensor.from(data, [4], options as never)).toThrow(/Tensor\.from: options must be an object such as \{ dtype/);
    }
    const t = Tensor.from(data, [4], { dtype: "bf16" });
    expect(t.dtype).toBe("bf16");
    t.dispose();
    const plain = Tensor.from(data, [4]);
    expect(plain.dtype).toBe("f32");
    plain.dispose();
    // A misspelt option is refused, not left out.
    expect(() => Tensor.from(data, [4], { dtyp: "bf16" } as never)).toThrow(
      'Tensor.from: options has no option "dtyp"; its options are dtype, device',
    );
  });

  test("an async kernel's second argument takes { signal } only, checked, and a refusal leaves no output made", async () => {
    const maker = new Maker(rng);
    const x = maker.floats([2, 8], "f32"),
      weight = maker.floats([3, 8], "f32");
    const before = memoryUsage().cpu;
    await expect(kernels.linearAsync({ x, weight }, { signal: 5 } as never)).rejects.toThrow(/^linearAsync: signal must be an AbortSignal/);
    await expect(kernels.linearAsync({ x, weight }, { sigal: AbortSignal.abort() } as never)).rejects.toThrow(
      'linearAsync: options has no option "sigal"; its options are signal',
    );
    await expect(kernels.linearAsync({ x, weight }, "x" as never)).rejects.toThrow(/^linearAsync: options must be an object/);
    expect(memoryUsage().cpu).toBe(before);
    const y = await kernels.linearAsync({ x, weight }, {});
    expect(y.shape).toEqual([2, 3]);
    y.dispose();
    maker.disposeAll();
  });

  test("a sink or window past the sequence means all of it, even 2^31 - 1, rather than a 32-bit overflow error", () => {
    const maker = new Maker(rng);
    const n = maker.rng.int(3, 9),
      big = 2 ** 31 - 1;
    const q = maker.floats([n, 2, 8], "f32"),
      k = maker.floats([n, 1, 8], "f32"),
      v = maker.floats([n, 1, 8], "f32");
    const run = (streaming: { sink: number; window: number }, lazyRatio: { sink: number; window: number; lastQueries: number }) => {
      const r = kernels.prefillAttention({ q, k, v, streaming, lazyRatio, returnLse: true });
      const values = [r.out, r.lse!, r.lazyRatio!].map((t) => Array.from(t.toFloat32Array()));
      for (const t of [r.out, r.lse!, r.lazyRatio!]) t.dispose();
      return values;
    };
    expect(run({ sink: 2, window: big }, { sink: big, window: big, lastQueries: n })).toEqual(
      run({ sink: 2, window: n }, { sink: n, window: n, lastQueries: n }),
    );
    // Past 2^31 - 1 is no longer "no limit" but a value the kernels cannot take: still refused.
    expect(() => kernels.prefillAttention({ q, k, v, streaming: { sink: 2 ** 31, window: 4 } })).toThrow(/sink/);
    expect(() => kernels.prefillAttention({ q, k, v, streaming: { sink: 1, window: 2 ** 31 } })).toThrow(/window/);
    const lse = kernels.prefillAttention({ q, k, v, returnLse: true }).lse!;
    const ratio = (sink: number, window: number) =>
      Array.from(kernels.lazyRatio({ q, k, lse, sink, window, lastQueries: n }).toFloat32Array());
    expect(ratio(1, big)).toEqual(ratio(1, n));
    // The pool: a cut of a cache of `length` tokens with a window past it keeps them all in place.
    const pageSize = 2,
      pages = 6,
      length = maker.rng.int(3, 10);
    const pool = () => [maker.floats([pages, pageSize, 1, 4], "f32"), maker.floats([pages, pageSize, 1, 4], "f32")];
    const [kA, vA] = pool();
    const [kB, vB] = [Tensor.from(kA.toFloat32Array(), kA.shape), Tensor.from(vA.toFloat32Array(), vA.shape)];
    const table = maker.ints([0, 1, 2, 3, 4]),
      dst = maker.ints([5, 1, 2, 3, 4]);
    kernels.cutToStreaming({ kPages: kA, vPages: vA, srcPageTable: table, dstPageTable: dst, length, sink: 1, window: big });
    kernels.cutToStreaming({ kPages: kB, vPages: vB, srcPageTable: table, dstPageTable: dst, length, sink: 1, window: length });
    expect(Array.from(kA.toFloat32Array())).toEqual(Array.from(kB.toFloat32Array()));
    expect(Array.from(vA.toFloat32Array())).toEqual(Array.from(vB.toFloat32Array()));
    for (const t of [lse, kB, vB]) t.dispose();
    maker.disposeAll();
  });

  test("a given output needs what fills it; a cached ring of no limit is the exact one; heads per kv head are bounded", () => {
    const maker = new Maker(rng);
    const [d, length] = [8, maker.rng.int(2, 7)];
    const q = maker.floats([1, 2, d], "f32");
    const kPages = maker.floats([2, 4, 1, d], "f32"),
      vPages = maker.floats([2, 4, 1, d], "f32");
    const pageTable = maker.ints([0, 1]);
    const cachedOut = (window: number) => {
      const { out } = kernels.prefillAttention({
        q,
        streaming: { sink: 1, window },
        cached: { kPages, vPages, pageTable, length, ring: { sink: 1, window } },
      });
      const values = Array.from(out.toFloat32Array());
      out.dispose();
      return values;
    };
    expect(cachedOut(2 ** 31 - 1)).toEqual(cachedOut(length));
    const lazyRatioOut = maker.floats([2], "f32");
    expect(() =>
      kernels.prefillAttention({ q, k: kPages.rows(0, 1).reshape([4, 1, d]), v: vPages.rows(0, 1).reshape([4, 1, d]), lazyRatioOut }),
    ).toThrow(/prefillAttention: lazyRatioOut is given but lazyRatio is not/);
    const table = maker.floats([5, d], "f32");
    expect(() => kernels.embedding({ ids: maker.ints([1, 2]), table, dtype: "f32", out: maker.floats([2, d], "bf16") })).toThrow(
      /embedding: dtype is "f32" but out is bf16/,
    );
    const wide = maker.floats([1, 257 * 2, d], "f32");
    expect(() => kernels.prefillAttention({ q: wide, k: maker.floats([1, 2, d], "f32"), v: maker.floats([1, 2, d], "f32") })).toThrow(
      /q has 257 heads per kv head; at most 256 are supported/,
    );
    maker.disposeAll();
  });

  test("the addon says what an integer field was given when it is not a number", () => {
    const native = addon() as unknown as Record<string, (options: unknown) => unknown>;
    const maker = new Maker(rng);
    const pool = () => maker.floats([2, 4, 1, 4], "f32").handle;
    const table = maker.ints([0, 1]).handle;
    const cut = (length: unknown) => () =>
      native.cutToStreaming({ kPages: pool(), vPages: pool(), srcPageTable: table, dstPageTable: table, length, sink: 1, window: 2 });
    expect(cut("6")).toThrow('cutToStreaming: length must be an integer (a number), got "6"');
    expect(cut(6n)).toThrow("cutToStreaming: length must be an integer (a number), got a BigInt");
    expect(cut(Symbol("six"))).toThrow("cutToStreaming: length must be an integer (a number), got a Symbol");
    expect(cut(undefined)).toThrow("cutToStreaming: length is required (an integer)");
    maker.disposeAll();
  });

  test("the addon refuses an unknown GEMM choice on the CPU too, which has one GEMM", () => {
    const native = addon() as unknown as Record<string, (options: unknown) => unknown>;
    const maker = new Maker(rng);
    const x = maker.floats([2, 8], "f32").handle,
      weight = maker.floats([3, 8], "f32").handle,
      out = maker.floats([2, 3], "f32").handle;
    expect(() => native.linear({ x, weight, out, gemm: "bogus" })).toThrow(
      "linear: gemm must be auto, cublasLt, gemv, gemv-only, cublas or fallback, not 'bogus'",
    );
    expect(() => native.linear({ x, weight, out, gemm: 7 })).toThrow("linear: gemm must be a string");
    for (const gemm of ["auto", "cublasLt", "gemv", "gemv-only", "cublas", "fallback"])
      expect(() => native.linear({ x, weight, out, gemm })).not.toThrow();
    maker.disposeAll();
  });

  test("the addon refuses options that are an array or a typed array, before it lists their elements", () => {
    const native = addon() as unknown as Record<string, (options: unknown) => unknown>;
    for (const options of [new Uint8Array(1 << 20), new Array(1 << 20).fill(0), Object.create(new Float32Array(1 << 20))])
      expect(() => native.argmax(options)).toThrow(/argmax: the options must be a plain object, not an array, a typed array or a buffer/);
  });

  test("options that are not an object, whole or nested, get an error naming the kernel, not a TypeError from inside it", async () => {
    const wrappers = kernels as unknown as Record<string, (o: unknown) => unknown>;
    for (const name of kernelNames) {
      for (const options of [undefined, null, 42, "options", [], true]) {
        await expect(async () => wrappers[name](options)).rejects.toThrow(new RegExp(`^${name}: options must be an object \\(\\{ `));
      }
    }
    const maker = new Maker(rng);
    const q = maker.floats([4, 2, 8], "f32");
    expect(() => kernels.prefillAttention({ q, k: q, v: q, streaming: 5 as never })).toThrow(
      /prefillAttention: streaming must be an object \(\{ sink, window \}\)/,
    );
    maker.disposeAll();
  });

  test("prefillAttention's CUDA kernel choice is checked in JS and ignored by the CPU kernel", () => {
    const maker = new Maker(rng);
    const q = maker.floats([5, 2, 8], "f32");
    for (const kernel of ["wgmma2", "", 3, null])
      expect(() => kernels.prefillAttention({ q, k: q, v: q, kernel: kernel as never })).toThrow(
        /prefillAttention: kernel must be one of auto, mmaSync, wgmma, got/,
      );
    const plain = Array.from(kernels.prefillAttention({ q, k: q, v: q }).out.toArray());
    for (const kernel of kernels.prefillKernelChoices)
      expect(Array.from(kernels.prefillAttention({ q, k: q, v: q, kernel }).out.toArray())).toEqual(plain);
    maker.disposeAll();
  });
});

describe(`seed ${rng.seed}: values and memory a kernel would misread`, () => {
  test("scale and eps outside float32's range are refused, not rounded to infinity or zero", () => {
    const maker = new Maker(rng);
    const q = maker.floats([4, 2, 8], "f32");
    const x = maker.floats([3, 8], "f32"),
      weight = maker.floats([8], "f32");
    const outside = /must be a finite number > 0 that float32 holds \(1\.4e-45 to 3\.4e38\)/;
    for (const scale of [1e39, 1e-50]) {
      expect(() => kernels.prefillAttention({ q, k: q, v: q, scale })).toThrow(outside);
      expect(() => kernels.lazyRatio({ q, k: q, lse: maker.floats([4, 2], "f32"), sink: 1, window: 2, lastQueries: 2, scale })).toThrow(
        outside,
      );
    }
    for (const eps of [1e39, 1e-50]) expect(() => kernels.rmsNorm({ x, weight, eps })).toThrow(outside);
    maker.disposeAll();
  });

  test("the standalone lazy ratio of NaN scores or a NaN lse is NaN, not 1", () => {
    const maker = new Maker(rng);
    const q = maker.floats([4, 2, 4], "f32"),
      k = maker.floats([8, 1, 4], "f32");
    const lse = Tensor.from(
      Float32Array.from({ length: 8 }, (_, i) => (i === 0 ? Number.NaN : 1)),
      [4, 2],
    );
    const ratio = kernels.lazyRatio({ q, k, lse, sink: 1, window: 2, lastQueries: 4 }).toFloat32Array();
    expect(Number.isNaN(ratio[0])).toBe(true);
    expect(ratio[1]).toBeGreaterThan(0);
    expect(ratio[1]).toBeLessThanOrEqual(1);
    lse.dispose();
    maker.disposeAll();
  });

  test("cache kernels and rmsNorm refuse outputs that share memory with what they read", () => {
    const maker = new Maker(rng);
    const pool = maker.floats([2, 4, 1, 8], "f32");
    const other = maker.floats([2, 4, 1, 8], "f32");
    const slots = maker.ints([3, 2], [2]);
    const inPool = pool.reshape([8, 1, 8]).rows(0, 2);
    const own = maker.floats([2, 1, 8], "f32");
    expect(() => kernels.appendKv({ k: inPool, v: own, kPages: pool, vPages: other, slots })).toThrow(
      /appendKv: the K\/V pool overlaps k: give k a tensor of its own/,
    );
    expect(() => kernels.gatherKv({ kPages: pool, vPages: other, slots, k: inPool, v: own })).toThrow(
      /gatherKv: k overlaps the K\/V pool: give k a tensor of its own/,
    );
    expect(() => kernels.gatherKv({ kPages: pool, vPages: other, slots, k: own, v: own })).toThrow(/gatherKv: k overlaps v/);
    const x = maker.floats([3, 8], "f32"),
      weight = maker.floats([8], "f32"),
      residual = maker.floats([3, 8], "f32");
    expect(() => kernels.rmsNorm({ x, weight, residual, out: residual })).toThrow(/rmsNorm: residual overlaps out/);
    inPool.dispose();
    maker.disposeAll();
  });

  test("every kernel refuses an output that shares memory with another tensor of the call, and leaves them as they were", () => {
    const maker = new Maker(rng);
    const [hq, hkv, d, n] = [4, 2, 8, 6];
    const width = hq * d;
    // One buffer of 4n rows of `width` floats; `at(row, rows, shape)` is a view of rows [row, row + rows).
    const buffer = maker.floats([4 * n, width], "f32");
    const at = (row: number, rows: number, shape: number[]) => buffer.rows(row, rows).reshape(shape);
    const k = maker.floats([n, hkv, d], "f32"),
      v = maker.floats([n, hkv, d], "f32");
    const pool = maker.floats([4, 4, hkv, d], "f32");
    const positions = maker.ints([0, 1, 2, 3, 4, 5], [n]);
    const before = buffer.toFloat32Array().slice(),
      poolBefore = pool.toFloat32Array().slice();
    const cases: Array<[string, () => unknown, RegExp]> = [
      [
        "prefill: out half over q",
        () => kernels.prefillAttention({ q: at(0, n, [n, hq, d]), k, v, out: at(n / 2, n, [n, hq, d]) }),
        /prefillAttention: out overlaps q/,
      ],
      [
        "prefill: lse inside out",
        () =>
          kernels.prefillAttention({
            q: at(2 * n, n, [n, hq, d]),
            k,
            v,
            out: at(0, n, [n, hq, d]),
            lse: at(0, n, [n * width])
              .rows(0, n * hq)
              .reshape([n, hq]),
          }),
        /prefillAttention: out overlaps lse/,
      ],
      [
        "decode: out inside the pool",
        () =>
          kernels.decodeAttention({
            q: maker.floats([1, hq, d], "f32"),
            kPages: pool,
            vPages: maker.floats([4, 4, hkv, d], "f32"),
            pageTable: maker.ints([0], [1, 1]),
            seqLens: maker.ints([3], [1]),
            out: pool
              .rows(0, 1)
              .reshape([(4 * hkv * d) / width, hq, d])
              .rows(0, 1),
          }),
        /decodeAttention: out overlaps kPages/,
      ],
      [
        "appendKv: the K and V pools one tensor",
        () => kernels.appendKv({ k, v, kPages: pool, vPages: pool, slots: maker.ints([0, 1, 2, 3, 4, 5], [n]) }),
        /appendKv: kPages overlaps vPages: give K and V pools of their own/,
      ],
      [
        "rmsNorm: out half over x",
        () => kernels.rmsNorm({ x: at(0, n, [n, width]), weight: maker.floats([width], "f32"), out: at(n / 2, n, [n, width]) }),
        /rmsNorm: out overlaps x/,
      ],
      [
        "swiGlu: out inside x",
        () => kernels.swiGlu({ x: at(0, n, [n, width]), out: at(0, n / 2, [n, width / 2]) }),
        /swiGlu: out overlaps x/,
      ],
      [
        "rope: q and k over the same rows",
        () => kernels.rope({ q: at(0, n, [n, hq, d]), k: at(0, n / 2, [n, hkv, d]), positions, invFreq: maker.floats([d / 2], "f32") }),
        /rope: q overlaps k/,
      ],
    ];
    cases.push([
      "ropeAppendKv: q inside qkv",
      () =>
        kernels.ropeAppendKv({
          qkv: at(0, 2 * n, [n, (hq + 2 * hkv) * d]),
          q: at(0, n, [n, hq, d]),
          positions,
          invFreq: maker.floats([d / 2], "f32"),
          kPages: pool,
          vPages: maker.floats([4, 4, hkv, d], "f32"),
          slots: maker.ints([0, 1, 2, 3, 4, 5], [n]),
        }),
      /ropeAppendKv: q overlaps qkv/,
    ]);
    const errorOf = (call: () => unknown) => {
      try {
        call();
        return "none";
      } catch (err) {
        return (err as Error).message;
      }
    };
    for (const [what, call, message] of cases)
      expect({ what, error: errorOf(call) }).toEqual({ what, error: expect.stringMatching(message) });
    expect(Array.from(buffer.toFloat32Array())).toEqual(Array.from(before));
    expect(Array.from(pool.toFloat32Array())).toEqual(Array.from(poolBefore));
    maker.disposeAll();
  });
});
