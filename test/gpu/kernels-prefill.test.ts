// CUDA prefill attention against the CPU kernel (itself checked against float64 in
// test/*.test.ts): contiguous keys, then a cached prefix read through page tables.
// Runs where CUDA is available: `npm run test:gpu`. Elsewhere every test here is skipped and
// the reason is printed.
import { devices, kernels, Tensor } from "../../lib";
import { cudaKernelKit, type Half, maxAbs, relTol } from "../helpers/cuda-kernels";
import { describeWithCuda, relError } from "../helpers/gpu";
import { scatteredPages, slotsUsed, writeThroughPages } from "../helpers/pages";

const describeGpu = describeWithCuda("kernel");
const { rng, scope, pair } = cudaKernelKit();

// The wgmma kernel runs on compute capability 9.0 only; there every case runs on both kernels.
const hopper = devices().some((d) => d.type === "cuda" && d.index === 0 && d.computeCapability === "9.0");
const gpuKernels: kernels.PrefillKernelChoice[] = hopper ? ["mmaSync", "wgmma"] : ["mmaSync"];
if (!hopper) process.stderr.write("\n[lighttransfer] wgmma prefill cases SKIPPED: cuda:0 is not compute capability 9.0\n\n");
const withKernels = <C extends object>(cases: C[]) => cases.flatMap((c) => gpuKernels.map((kernel) => ({ ...c, kernel })));

const ratioSpec = { sink: 4, window: 64, lastQueries: 32 };

/** `data` as a CPU tensor of `dtype` and its copy on cuda:0, both freed after the test. */
function onBoth(data: Float32Array, shape: number[], dtype: Half) {
  const cpu = scope.add(Tensor.from(data, shape, { dtype }));
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
  test.each(withKernels(cases))("nq=$nq nk=$nk hq=$hq hkv=$hkv d=$d $dtype mask=$mask $kernel", (c) => {
    const q = pair([c.nq, c.hq, c.d], c.dtype),
      k = pair([c.nk, c.hkv, c.d], c.dtype),
      v = pair([c.nk, c.hkv, c.d], c.dtype);
    const withRatio = c.nq >= Math.min(32, c.nk);
    const run = (dev: "cpu" | "gpu") =>
      kernels.prefillAttention({
        q: q[dev],
        k: k[dev],
        v: v[dev],
        returnLse: true,
        streaming: c.mask,
        lazyRatio: withRatio ? ratioSpec : undefined,
        kernel: c.kernel,
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

describeGpu("CUDA prefill attention with scores rising along the keys equals the CPU kernel", () => {
  // Every query's last element is `lift` and every key's last element climbs from 0 to 1 along
  // the keys, so each row's scores rise by lift * scale (about 60 in log2 units over the keys):
  // the running max keeps moving, by less and by more than a tile's worth, and the rescaling
  // of earlier sums and outputs is exercised in every row.
  const cases = [
    { nq: 1031, nk: 1031, hq: 8, hkv: 2, d: 128, dtype: "bf16" as Half },
    { nq: 300, nk: 900, hq: 4, hkv: 1, d: 64, dtype: "f16" as Half },
  ];
  test.each(withKernels(cases))("nq=$nq nk=$nk hq=$hq hkv=$hkv d=$d $dtype $kernel", (c) => {
    const lift = 42 * Math.sqrt(c.d);
    const qData = rng.normals(c.nq * c.hq * c.d);
    for (let row = 0; row < c.nq * c.hq; row++) qData[row * c.d + c.d - 1] = lift;
    const kData = rng.normals(c.nk * c.hkv * c.d);
    for (let j = 0; j < c.nk; j++) for (let h = 0; h < c.hkv; h++) kData[(j * c.hkv + h) * c.d + c.d - 1] = j / (c.nk - 1);
    const q = onBoth(qData, [c.nq, c.hq, c.d], c.dtype),
      k = onBoth(kData, [c.nk, c.hkv, c.d], c.dtype),
      v = pair([c.nk, c.hkv, c.d], c.dtype);
    const run = (dev: "cpu" | "gpu") =>
      kernels.prefillAttention({ q: q[dev], k: k[dev], v: v[dev], returnLse: true, lazyRatio: ratioSpec, kernel: c.kernel });
    const want = run("cpu"),
      got = run("gpu");
    for (const r of [want, got]) [r.out, r.lse, r.lazyRatio].forEach((t) => scope.add(t));
    const err = relError(got.out.toFloat32Array(), want.out.toFloat32Array());
    if (!(err < relTol[c.dtype])) throw new Error(`out relative error ${err} (seed ${rng.seed})`);
    // The LSE grows to about lift * scale in natural units; 2e-3 of it is what the halves allow.
    const lseScale = Math.max(...Array.from(want.lse!.toFloat32Array(), Math.abs));
    expect(maxAbs(got.lse!.toFloat32Array(), want.lse!.toFloat32Array())).toBeLessThan(2e-3 * Math.max(1, lseScale));
    expect(maxAbs(got.lazyRatio!.toFloat32Array(), want.lazyRatio!.toFloat32Array())).toBeLessThan(2e-3);
  });
});

describeGpu("CUDA prefill attention over a paged prefix equals the CPU kernel", () => {
  const cases = [
    { start: 1000, own: 300, nq: 300, hq: 8, hkv: 2, d: 128, dtype: "bf16" as Half, pageSize: 16 },
    { start: 77, own: 200, nq: 200, hq: 4, hkv: 1, d: 64, dtype: "f16" as Half, pageSize: 7 },
    { start: 5000, own: 130, nq: 130, hq: 8, hkv: 1, d: 128, dtype: "bf16" as Half, pageSize: 16, ring: { sink: 4, window: 1020 } },
    { start: 3000, own: 2000, nq: 2000, hq: 4, hkv: 2, d: 64, dtype: "f16" as Half, pageSize: 32, ring: { sink: 4, window: 100 } },
    { start: 600, own: 0, nq: 64, hq: 16, hkv: 2, d: 128, dtype: "bf16" as Half, pageSize: 16 },
    { start: 900, own: 40, nq: 40, hq: 8, hkv: 8, d: 64, dtype: "bf16" as Half, pageSize: 16, ring: { sink: 0, window: 200 } },
    // The prefix ends on a tile boundary; pages larger and smaller than a producer's row step, and
    // the default 16 at d 64.
    { start: 2048, own: 256, nq: 256, hq: 8, hkv: 2, d: 128, dtype: "bf16" as Half, pageSize: 64 },
    { start: 1500, own: 100, nq: 100, hq: 4, hkv: 2, d: 64, dtype: "f16" as Half, pageSize: 8 },
    { start: 1500, own: 100, nq: 100, hq: 4, hkv: 2, d: 64, dtype: "bf16" as Half, pageSize: 16 },
    // Pages of several tiles, and pages smaller than a producer's row step at d 128.
    { start: 1300, own: 200, nq: 200, hq: 8, hkv: 2, d: 128, dtype: "bf16" as Half, pageSize: 256 },
    { start: 700, own: 90, nq: 90, hq: 4, hkv: 1, d: 128, dtype: "f16" as Half, pageSize: 4 },
  ];
  test.each(withKernels(cases))("start=$start own=$own nq=$nq hq=$hq hkv=$hkv d=$d $dtype pageSize=$pageSize ring=$ring $kernel", (c) => {
    const nk = c.start + c.own,
      rowSize = c.hkv * c.d;
    const layout = { pageSize: c.pageSize, ring: c.ring };
    const { table, numPages } = scatteredPages((items) => rng.shuffle(items), slotsUsed(c.start, layout), c.pageSize, 5);
    const keys = rng.normals(nk * rowSize),
      values = rng.normals(nk * rowSize);
    // Unused slots hold NaN: reading one poisons the output.
    const poolShape = [numPages, c.pageSize, c.hkv, c.d];
    const kPages = onBoth(writeThroughPages(keys, c.start, rowSize, table, numPages, layout), poolShape, c.dtype);
    const vPages = onBoth(writeThroughPages(values, c.start, rowSize, table, numPages, layout), poolShape, c.dtype);
    const ownRows = (rows: Float32Array) => (c.own > 0 ? onBoth(rows.slice(c.start * rowSize), [c.own, c.hkv, c.d], c.dtype) : undefined);
    const k = ownRows(keys),
      v = ownRows(values);
    const kAll = onBoth(keys, [nk, c.hkv, c.d], c.dtype),
      vAll = onBoth(values, [nk, c.hkv, c.d], c.dtype);
    const q = pair([c.nq, c.hq, c.d], c.dtype);
    const pageTable = { cpu: scope.ints(table), gpu: scope.ints(table, [table.length], "cuda:0") };
    const run = (dev: "cpu" | "gpu") =>
      kernels.prefillAttention({
        q: q[dev],
        k: k?.[dev],
        v: v?.[dev],
        streaming: c.ring,
        returnLse: true,
        lazyRatio: ratioSpec,
        cached: { kPages: kPages[dev], vPages: vPages[dev], pageTable: pageTable[dev], length: c.start, ring: c.ring },
        kernel: c.kernel,
      });
    const want = run("cpu"),
      got = run("gpu");
    const contiguous = kernels.prefillAttention({
      q: q.gpu,
      k: kAll.gpu,
      v: vAll.gpu,
      streaming: c.ring,
      returnLse: true,
      lazyRatio: ratioSpec,
      kernel: c.kernel,
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

describeGpu("the CUDA prefill kernel choice", () => {
  const q = () => pair([300, 8, 128], "bf16").gpu,
    kv = () => pair([300, 2, 128], "bf16").gpu;
  test("auto runs the wgmma kernel on compute capability 9.0 and mma.sync elsewhere, bit for bit", () => {
    const [qq, k, v] = [q(), kv(), kv()];
    const run = (kernel: kernels.PrefillKernelChoice) =>
      Array.from(scope.add(kernels.prefillAttention({ q: qq, k, v, kernel }).out).toArray());
    const auto = run("auto");
    expect(auto).toEqual(run(hopper ? "wgmma" : "mmaSync"));
    // The two kernels sum in different orders: the check above means something only if they differ.
    if (hopper) expect(auto).not.toEqual(run("mmaSync"));
  });
  test("wgmma on another GPU is an error that names the remedy", () => {
    if (hopper) return; // covered by the cases above
    expect(() => kernels.prefillAttention({ q: q(), k: kv(), v: kv(), kernel: "wgmma" })).toThrow(
      /wgmma kernel needs a GPU of compute capability 9\.0.*'auto' or 'mmaSync'/,
    );
  });
});
