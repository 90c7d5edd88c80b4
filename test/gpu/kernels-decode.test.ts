// CUDA decode attention and the standalone lazy ratio against the CPU kernels (themselves
// checked against float64 in test/*.test.ts).
// Runs where CUDA is available: `npm run test:gpu`. Elsewhere every test here is skipped and
// the reason is printed.
import { kernels, Tensor } from "../../lib";
import { cudaKernelKit, type Half, maxAbs, relTol } from "../helpers/cuda-kernels";
import { bits, describeWithCuda, relError } from "../helpers/gpu";

const describeGpu = describeWithCuda("kernel");
const { rng, scope, pair } = cudaKernelKit();

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
    const onGpu = { pageTable: scope.add(pageTable.to("cuda:0")), seqLens: scope.add(seqLens.to("cuda:0")) };
    const launch = () => {
      const r = kernels.decodeAttention({ q: q.gpu, kPages: kPages.gpu, vPages: vPages.gpu, returnLse: true, ...onGpu });
      return { out: scope.add(r.out), lse: scope.add(r.lse!) };
    };
    const got = launch();
    [want.out, want.lse!].forEach((t) => scope.add(t));
    const err = relError(got.out.toFloat32Array(), want.out.toFloat32Array());
    if (!(err < relTol[c.dtype])) throw new Error(`out relative error ${err} (seed ${rng.seed})`);
    expect(maxAbs(got.lse.toFloat32Array(), want.lse!.toFloat32Array())).toBeLessThan(2e-3);
    // The last split of each head to finish merges the splits and resets their arrival count:
    // launched again, back to back, the merge happens again and gives the same bits.
    const first = { out: bits(got.out), lse: bits(got.lse) };
    for (const again of [launch(), launch()]) {
      const same = (a: ArrayLike<number>, b: ArrayLike<number>) => a.length === b.length && Array.from(a).every((v, j) => v === b[j]);
      expect({ seed: rng.seed, out: same(bits(again.out), first.out), lse: same(bits(again.lse), first.lse) }).toEqual({
        seed: rng.seed,
        out: true,
        lse: true,
      });
    }
  });
});

describeGpu("CUDA decode steps chained on the device equal the CPU's", () => {
  // Each step's ropeAppendKv writes q and the new token's K/V row, and the decode attention right
  // behind it reads them; on sm_90 both are programmatic dependents, each launched while the
  // kernel ahead of it runs. Every input is on the device before the first step and
  // the CPU's steps run after the last, so the two kernels of a step, and one step's attention and
  // the next step's rope, are launched back to back: nothing may be read before it is written.
  test.each([
    { pageSize: 16, dtype: "bf16" as Half, d: 128 },
    { pageSize: 12, dtype: "f16" as Half, d: 64 },
  ])("batch 2, 6 steps, hq=32 hkv=8 d=$d $dtype, pages of $pageSize", ({ pageSize, dtype, d }) => {
    const hq = 32,
      hkv = 8,
      steps = 6;
    const cached = [rng.int(100, 400), rng.int(1000, 3000)];
    const pagesPer = cached.map((n) => Math.ceil((n + steps) / pageSize));
    const maxPages = Math.max(...pagesPer);
    const numPages = pagesPer.reduce((a, b) => a + b, 0) + 1;
    const ids = rng.shuffle(Array.from({ length: numPages }, (_, i) => i));
    const tables = pagesPer.map((n) => ids.splice(0, n));
    const pageTable = scope.ints(
      tables.flatMap((t) => [...t, ...Array(maxPages - t.length).fill(0)]),
      [cached.length, maxPages],
    );
    const kPages = pair([numPages, pageSize, hkv, d], dtype),
      vPages = pair([numPages, pageSize, hkv, d], dtype);
    const invFreq = scope.add(
      Tensor.from(
        Float32Array.from({ length: d / 2 }, (_, i) => 500000 ** ((-2 * i) / d)),
        [d / 2],
      ),
    );
    const inputs = Array.from({ length: steps }, (_, step) => {
      const lens = cached.map((n) => n + step);
      const cpu = {
        positions: scope.ints(lens),
        seqLens: scope.ints(lens.map((n) => n + 1)),
        slots: scope.ints(lens.map((n, b) => tables[b][Math.floor(n / pageSize)] * pageSize + (n % pageSize))),
      };
      const gpu = {
        positions: scope.add(cpu.positions.to("cuda:0")),
        seqLens: scope.add(cpu.seqLens.to("cuda:0")),
        slots: scope.add(cpu.slots.to("cuda:0")),
      };
      return { qkv: pair([cached.length, (hq + 2 * hkv) * d], dtype), cpu, gpu };
    });
    const shared = {
      cpu: { pageTable, invFreq, kPages: kPages.cpu, vPages: vPages.cpu },
      gpu: {
        pageTable: scope.add(pageTable.to("cuda:0")),
        invFreq: scope.add(invFreq.to("cuda:0")),
        kPages: kPages.gpu,
        vPages: vPages.gpu,
      },
    };
    const runStep = (step: (typeof inputs)[number], on: "cpu" | "gpu") => {
      const { pageTable, invFreq, kPages, vPages } = shared[on];
      const { positions, seqLens, slots } = step[on];
      const q = scope.add(kernels.ropeAppendKv({ qkv: step.qkv[on], positions, invFreq, kPages, vPages, slots }));
      const r = kernels.decodeAttention({ q, kPages, vPages, pageTable, seqLens, returnLse: true });
      return { out: scope.add(r.out), lse: scope.add(r.lse!) };
    };
    const got = inputs.map((step) => runStep(step, "gpu"));
    inputs.forEach((step, i) => {
      const want = runStep(step, "cpu");
      const err = relError(got[i].out.toFloat32Array(), want.out.toFloat32Array());
      if (!(err < relTol[dtype])) throw new Error(`step ${i}: out relative error ${err} (seed ${rng.seed})`);
      expect(maxAbs(got[i].lse.toFloat32Array(), want.lse.toFloat32Array())).toBeLessThan(2e-3);
    });
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
