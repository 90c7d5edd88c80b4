// CUDA cache operations against the CPU ones, bit for bit, and the errors CUDA calls give
// (JS errors with a remedy; the process keeps working).
// Runs where CUDA is available: `npm run test:gpu`. Elsewhere every test here is skipped and
// the reason is printed.
import { cudaStatus, devices, kernels, Tensor } from "../../lib";
import { cudaKernelKit } from "../helpers/cuda-kernels";
import { describeWithCuda } from "../helpers/gpu";

const describeGpu = describeWithCuda("kernel");
const { rng, scope, pair } = cudaKernelKit();
const status = cudaStatus();

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
  test("an index tensor written through another view of its memory is checked as it now is", () => {
    // The host copy of a device index tensor's contents (what checks read instead of waiting for
    // the device) was kept per tensor: a write through a reshape or a row view left the other's
    // stale, and its checks passed indices the device no longer held (an out-of-bounds append).
    const kPages = scope.add(Tensor.empty([4, 16, 8, 128], "bf16", "cuda:0"));
    const vPages = scope.add(Tensor.empty([4, 16, 8, 128], "bf16", "cuda:0"));
    const k = scope.add(Tensor.empty([2, 8, 128], "bf16", "cuda:0"));
    const v = scope.add(Tensor.empty([2, 8, 128], "bf16", "cuda:0"));
    const slots = scope.add(Tensor.from(Int32Array.of(rng.int(0, 63), rng.int(0, 63)), [2], { device: "cuda:0" }));
    const bad = rng.int(64, 2 ** 30);
    const outside = new RegExp(`slots\\[1\\] = ${bad} is outside the pool's slots 0\\.\\.63`);
    for (const alias of [scope.add(slots.reshape([1, 2])), scope.add(slots.rows(0, 2))]) {
      slots.write(Int32Array.of(rng.int(0, 63), rng.int(0, 63)));
      kernels.appendKv({ k, v, kPages, vPages, slots }); // checked from the host copy just written
      alias.write(Int32Array.of(rng.int(0, 63), bad));
      expect(() => kernels.appendKv({ k, v, kPages, vPages, slots })).toThrow(outside);
      expect(Array.from(slots.toArray() as Int32Array)[1]).toBe(bad);
    }
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
