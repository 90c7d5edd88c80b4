// CUDA kernels against the CPU kernels (themselves checked against float64 in test/*.test.ts).
// Runs where CUDA is available: `npm run test:gpu`. Elsewhere every test here is skipped and
// the reason is printed.
import { cudaStatus, devices, kernels, Tensor } from "../../lib";
import { describeWithCuda, relError } from "../helpers/gpu";
import { scatteredPages, slotsUsed, writeThroughPages } from "../helpers/pages";
import { Random } from "../helpers/reference";
import { TensorScope } from "../helpers/tensors";

const status = cudaStatus();
const describeGpu = describeWithCuda("kernel");

const rng = new Random();
const scope = new TensorScope();
afterEach(() => scope.dispose());

type Half = "bf16" | "f16";
// bf16 keeps 8 significant bits and the kernels round P to the input type before the PV
// product, so a few 1e-3 of relative error is expected; f16 keeps 11 bits, 8x tighter.
const relTol: Record<Half, number> = { bf16: 1e-2, f16: 2e-3 };

function maxAbs(got: Float32Array, want: Float32Array): number {
  let m = 0;
  for (let i = 0; i < want.length; i++) {
    if (want[i] === -Infinity && got[i] === -Infinity) continue;
    const e = Math.abs(got[i] - want[i]);
    m = Number.isNaN(e) ? Infinity : Math.max(m, e);
  }
  return m;
}

/** The same random values on the CPU and on cuda:0. */
function pair(shape: number[], dtype: Half) {
  const cpu = scope.random(rng, shape, dtype).tensor;
  return { cpu, gpu: scope.add(cpu.to("cuda:0")) };
}

describeGpu("CUDA prefill attention equals the CPU kernel", () => {
  const cases = [
    { nq: 1, nk: 1, hq: 8, hkv: 8, d: 64, dtype: "bf16" as Half },
    { nq: 63, nk: 63, hq: 8, hkv: 2, d: 128, dtype: "bf16" as Half },
    { nq: 65, nk: 65, hq: 8, hkv: 1, d: 64, dtype: "f16" as Half },
    { nq: 1031, nk: 1031, hq: 4, hkv: 1, d: 128, dtype: "bf16" as Half },
    { nq: 130, nk: 700, hq: 8, hkv: 2, d: 128, dtype: "f16" as Half },
    { nq: 517, nk: 517, hq: 16, hkv: 2, d: 64, dtype: "bf16" as Half, mask: { sink: 4, window: 100 } },
    { nq: 300, nk: 300, hq: 4, hkv: 4, d: 128, dtype: "f16" as Half, mask: { sink: 0, window: 16 } },
    { nq: 2000, nk: 2000, hq: 8, hkv: 1, d: 128, dtype: "bf16" as Half, mask: { sink: 4, window: 1020 } },
  ];
  test.each(cases)("nq=$nq nk=$nk hq=$hq hkv=$hkv d=$d $dtype mask=$mask", (c) => {
    const q = pair([c.nq, c.hq, c.d], c.dtype),
      k = pair([c.nk, c.hkv, c.d], c.dtype),
      v = pair([c.nk, c.hkv, c.d], c.dtype);
    const spec = { sink: 4, window: 64, lastQueries: 32 };
    const withRatio = c.nq >= Math.min(32, c.nk);
    const run = (dev: "cpu" | "gpu") =>
      kernels.prefillAttention({
        q: q[dev],
        k: k[dev],
        v: v[dev],
        returnLse: true,
        streaming: c.mask,
        lazyRatio: withRatio ? spec : undefined,
      });
    const want = run("cpu"),
      got = run("gpu");
    for (const r of [want, got]) [r.out, r.lse, r.lazyRatio].forEach((t) => scope.add(t));
    expect(got.out.device).toBe("cuda:0");
    const err = relError(got.out.toFloat32Array(), want.out.toFloat32Array());
    if (!(err < relTol[c.dtype])) throw new Error(`out relative error ${err} (seed ${rng.seed})`);
    expect(maxAbs(got.lse!.toFloat32Array(), want.lse!.toFloat32Array())).toBeLessThan(2e-3);
    if (withRatio) expect(maxAbs(got.lazyRatio!.toFloat32Array(), want.lazyRatio!.toFloat32Array())).toBeLessThan(2e-3);
  });
});

describeGpu("CUDA prefill attention over a paged prefix equals the CPU kernel", () => {
  const ratio = { sink: 4, window: 64, lastQueries: 32 };
  const cases = [
    { start: 1000, own: 300, nq: 300, hq: 8, hkv: 2, d: 128, dtype: "bf16" as Half, pageSize: 16 },
    { start: 77, own: 200, nq: 200, hq: 4, hkv: 1, d: 64, dtype: "f16" as Half, pageSize: 7 },
    { start: 5000, own: 130, nq: 130, hq: 8, hkv: 1, d: 128, dtype: "bf16" as Half, pageSize: 16, ring: { sink: 4, window: 1020 } },
    { start: 3000, own: 2000, nq: 2000, hq: 4, hkv: 2, d: 64, dtype: "f16" as Half, pageSize: 32, ring: { sink: 4, window: 100 } },
    { start: 600, own: 0, nq: 64, hq: 16, hkv: 2, d: 128, dtype: "bf16" as Half, pageSize: 16 },
    { start: 900, own: 40, nq: 40, hq: 8, hkv: 8, d: 64, dtype: "bf16" as Half, pageSize: 16, ring: { sink: 0, window: 200 } },
  ];
  test.each(cases)("start=$start own=$own nq=$nq hq=$hq hkv=$hkv d=$d $dtype pageSize=$pageSize ring=$ring", (c) => {
    const nk = c.start + c.own,
      rowSize = c.hkv * c.d;
    const layout = { pageSize: c.pageSize, ring: c.ring };
    const { table, numPages } = scatteredPages((items) => rng.shuffle(items), slotsUsed(c.start, layout), c.pageSize, 5);
    const keys = rng.normals(nk * rowSize),
      values = rng.normals(nk * rowSize);
    // Unused slots hold NaN: reading one poisons the output.
    const onBoth = (data: Float32Array, shape: number[]) => {
      const cpu = scope.add(Tensor.from(data, shape, { dtype: c.dtype }));
      return { cpu, gpu: scope.add(cpu.to("cuda:0")) };
    };
    const poolShape = [numPages, c.pageSize, c.hkv, c.d];
    const kPages = onBoth(writeThroughPages(keys, c.start, rowSize, table, numPages, layout), poolShape);
    const vPages = onBoth(writeThroughPages(values, c.start, rowSize, table, numPages, layout), poolShape);
    const ownRows = (rows: Float32Array) => (c.own > 0 ? onBoth(rows.slice(c.start * rowSize), [c.own, c.hkv, c.d]) : undefined);
    const k = ownRows(keys),
      v = ownRows(values);
    const kAll = onBoth(keys, [nk, c.hkv, c.d]),
      vAll = onBoth(values, [nk, c.hkv, c.d]);
    const q = pair([c.nq, c.hq, c.d], c.dtype);
    const pageTable = { cpu: scope.ints(table), gpu: scope.ints(table, [table.length], "cuda:0") };
    const run = (dev: "cpu" | "gpu") =>
      kernels.prefillAttention({
        q: q[dev],
        k: k?.[dev],
        v: v?.[dev],
        streaming: c.ring,
        returnLse: true,
        lazyRatio: ratio,
        cached: { kPages: kPages[dev], vPages: vPages[dev], pageTable: pageTable[dev], length: c.start, ring: c.ring },
      });
    const want = run("cpu"),
      got = run("gpu");
    const contiguous = kernels.prefillAttention({
      q: q.gpu,
      k: kAll.gpu,
      v: vAll.gpu,
      streaming: c.ring,
      returnLse: true,
      lazyRatio: ratio,
    });
    for (const r of [want, got, contiguous]) [r.out, r.lse, r.lazyRatio].forEach((t) => scope.add(t));
    expect(got.out.device).toBe("cuda:0");
    const err = relError(got.out.toFloat32Array(), want.out.toFloat32Array());
    if (!(err < relTol[c.dtype])) throw new Error(`out relative error ${err} (seed ${rng.seed})`);
    expect(maxAbs(got.lse!.toFloat32Array(), want.lse!.toFloat32Array())).toBeLessThan(2e-3);
    expect(maxAbs(got.lazyRatio!.toFloat32Array(), want.lazyRatio!.toFloat32Array())).toBeLessThan(2e-3);
    // Through the pages or contiguous, the GPU visits the same tiles with the same keys.
    expect(Array.from(got.out.toArray())).toEqual(Array.from(contiguous.out.toArray()));
    expect(Array.from(got.lse!.toArray())).toEqual(Array.from(contiguous.lse!.toArray()));
  });
});

describeGpu("CUDA decode attention equals the CPU kernel", () => {
  test.each([
    { hq: 32, hkv: 8, d: 128, dtype: "bf16" as Half, lens: [0, 1, 15, 16, 17, 1024, 5000, 20000] },
    { hq: 8, hkv: 8, d: 64, dtype: "f16" as Half, lens: [3, 100, 777] },
    { hq: 16, hkv: 2, d: 128, dtype: "f16" as Half, lens: [12000, 1] },
  ])("hq=$hq hkv=$hkv d=$d $dtype lens=$lens", (c) => {
    const pageSize = 16;
    const pagesPer = c.lens.map((l) => Math.ceil(l / pageSize));
    const maxPages = Math.max(1, ...pagesPer);
    const numPages = pagesPer.reduce((a, b) => a + b, 0) + 2;
    const ids = rng.shuffle(Array.from({ length: numPages }, (_, i) => i));
    const table = pagesPer.flatMap((n) => {
      const t = ids.splice(0, n);
      return [...t, ...Array(maxPages - n).fill(0)];
    });
    const kPages = pair([numPages, pageSize, c.hkv, c.d], c.dtype),
      vPages = pair([numPages, pageSize, c.hkv, c.d], c.dtype);
    const q = pair([c.lens.length, c.hq, c.d], c.dtype);
    const pageTable = scope.ints(table, [c.lens.length, maxPages]),
      seqLens = scope.ints(c.lens);
    const want = kernels.decodeAttention({ q: q.cpu, kPages: kPages.cpu, vPages: vPages.cpu, pageTable, seqLens, returnLse: true });
    const got = kernels.decodeAttention({
      q: q.gpu,
      kPages: kPages.gpu,
      vPages: vPages.gpu,
      returnLse: true,
      pageTable: scope.add(pageTable.to("cuda:0")),
      seqLens: scope.add(seqLens.to("cuda:0")),
    });
    for (const r of [want, got]) [r.out, r.lse].forEach((t) => scope.add(t));
    const err = relError(got.out.toFloat32Array(), want.out.toFloat32Array());
    if (!(err < relTol[c.dtype])) throw new Error(`out relative error ${err} (seed ${rng.seed})`);
    expect(maxAbs(got.lse!.toFloat32Array(), want.lse!.toFloat32Array())).toBeLessThan(2e-3);
  });
});

describeGpu("CUDA cache operations equal the CPU ones bit for bit", () => {
  test.each([{ length: 50 }, { length: 20 }, { length: 2000 }])("append, then cut a cache of $length tokens", ({ length }) => {
    const pageSize = 16,
      hkv = 8,
      d = 128,
      sink = 4,
      window = 16;
    const numPages = Math.ceil(length / pageSize) + 4;
    const kPages = pair([numPages, pageSize, hkv, d], "bf16"),
      vPages = pair([numPages, pageSize, hkv, d], "bf16");
    const k = pair([length, hkv, d], "bf16"),
      v = pair([length, hkv, d], "bf16");
    const full = rng.shuffle(Array.from({ length: numPages }, (_, i) => i)).slice(0, Math.ceil(length / pageSize));
    const slots = Array.from({ length }, (_, p) => full[Math.floor(p / pageSize)] * pageSize + (p % pageSize));
    const ring = rng.shuffle(full.slice()).slice(0, Math.ceil(Math.min(length, sink + window) / pageSize));
    for (const dev of ["cpu", "gpu"] as const) {
      const onDev = (t: Tensor) => (dev === "cpu" ? t : scope.add(t.to("cuda:0")));
      kernels.appendKv({ k: k[dev], v: v[dev], kPages: kPages[dev], vPages: vPages[dev], slots: onDev(scope.ints(slots)) });
      kernels.cutToStreaming({
        kPages: kPages[dev],
        vPages: vPages[dev],
        srcPageTable: onDev(scope.ints(full)),
        dstPageTable: onDev(scope.ints(ring)),
        length,
        sink,
        window,
      });
    }
    expect(
      Buffer.from((kPages.gpu.toArray() as Uint16Array).buffer).equals(Buffer.from((kPages.cpu.toArray() as Uint16Array).buffer)),
    ).toBe(true);
    expect(
      Buffer.from((vPages.gpu.toArray() as Uint16Array).buffer).equals(Buffer.from((vPages.cpu.toArray() as Uint16Array).buffer)),
    ).toBe(true);
  });
});

describeGpu("CUDA standalone lazy ratio equals the CPU kernel", () => {
  test.each([
    { n: 3000, hkv: 8 },
    { n: 40, hkv: 1 },
    { n: 200, hkv: 4 },
  ])("N=$n hkv=$hkv", ({ n, hkv }) => {
    const hq = 32,
      d = 128,
      spec = { sink: 4, window: 64, lastQueries: 32 };
    const q = pair([n, hq, d], "bf16"),
      k = pair([n, hkv, d], "bf16");
    const lse = scope.add(kernels.prefillAttention({ q: q.cpu, k: k.cpu, v: k.cpu, returnLse: true }).lse!);
    const want = scope.add(kernels.lazyRatio({ q: q.cpu, k: k.cpu, lse, ...spec }));
    const got = scope.add(kernels.lazyRatio({ q: q.gpu, k: k.gpu, lse: scope.add(lse.to("cuda:0")), ...spec }));
    expect(maxAbs(got.toFloat32Array(), want.toFloat32Array())).toBeLessThan(2e-3);
  });
});

describeGpu("CUDA errors are JS errors and the process keeps working", () => {
  test("tensors on different devices", () => {
    const q = pair([4, 2, 64], "bf16");
    expect(() => kernels.prefillAttention({ q: q.gpu, k: q.cpu, v: q.cpu })).toThrow(
      /all tensors must be on one device: q is on cuda:0 but k is on cpu/,
    );
  });
  test("f32 and unsupported head dims are refused on CUDA with a remedy", () => {
    const f = scope.add(Tensor.from(rng.normals(4 * 2 * 64), [4, 2, 64]).to("cuda:0"));
    expect(() => kernels.prefillAttention({ q: f, k: f, v: f })).toThrow(/f16 or bf16/);
    const odd = pair([4, 2, 40], "bf16");
    expect(() => kernels.prefillAttention({ q: odd.gpu, k: odd.gpu, v: odd.gpu })).toThrow(/head dim/);
  });
  test("out of memory says how much was asked for and how much is free", () => {
    const gpu = devices().find((d) => d.type === "cuda")!;
    const tooMany = Math.ceil((gpu.totalMemory * 2) / 4);
    expect(() => Tensor.empty([tooMany], "f32", "cuda:0")).toThrow(
      /CUDA out of memory on cuda:0: asked for \d+ MiB, \d+ MiB free of \d+ MiB/,
    );
    const ok = scope.add(Tensor.from(rng.normals(1024), [1024], { device: "cuda:0" }));
    expect(ok.toFloat32Array().length).toBe(1024);
  });
  test("a nonexistent device", () => {
    expect(() => Tensor.empty([4], "f32", `cuda:${status.deviceCount}` as "cuda:0")).toThrow(/does not exist/);
  });
  test("freed device memory is reused by the pool, not returned and re-requested", () => {
    const bytes = 256 * 2 ** 20;
    const a = Tensor.empty([bytes / 4], "f32", "cuda:0");
    a.dispose();
    const before = (devices()[1] as { freeMemory: number }).freeMemory;
    const b = Tensor.empty([bytes / 4], "f32", "cuda:0");
    const after = (devices()[1] as { freeMemory: number }).freeMemory;
    b.dispose();
    expect(before - after).toBeLessThan(bytes / 2);
  });
  test("tensors round-trip through the GPU exactly", () => {
    for (const dtype of ["f32", "bf16", "f16", "i32"] as const) {
      const data = dtype === "i32" ? Int32Array.from({ length: 1000 }, () => rng.int(-1e6, 1e6)) : rng.normals(1000);
      const cpu = scope.add(Tensor.from(data, [10, 100], { dtype }));
      const back = scope.add(scope.add(cpu.to("cuda:0")).to("cpu"));
      expect(Buffer.from(back.toArray().buffer).equals(Buffer.from(cpu.toArray().buffer))).toBe(true);
    }
  });
});
