// The CUDA decode fast path: ropeAppendKv on CUDA against the CPU, CUDA graph capture and the
// checks every launch runs, and decode steps replayed from graphs against the eager steps.
import * as path from "node:path";
import { cudaStatus, kernels, loadModel, memoryUsage, synchronize, Tensor } from "../../lib";
import type { Sequence } from "../../lib/model/sequence";
import { CudaGraph } from "../../lib/runtime/cuda-graph";
import { addon, type NativeReadHandle } from "../../lib/runtime/native";
import { fixtureModels, fixtureRoot, prefilledSequences, readReference } from "../helpers/fixtures";
import { describeWithCuda, relError } from "../helpers/gpu";
import { Random } from "../helpers/reference";
import { TensorScope } from "../helpers/tensors";

const status = cudaStatus();
const describeGpu = describeWithCuda("decode-graph");

const rng = new Random();
const scope = new TensorScope();
afterEach(() => scope.dispose());

describeGpu("ropeAppendKv on CUDA equals the CPU", () => {
  // A decode step's few tokens share their work over several CTAs each (1 and 33 tokens with
  // 16-byte accesses, 2 tokens element by element at d = 66), 100 tokens over fewer CTAs with
  // two units for some threads, and 600 tokens one CTA each (on a GPU of 132 SMs).
  test.each([
    { tokens: 1, hq: 32, hkv: 8, d: 128, dtype: "bf16" },
    { tokens: 33, hq: 32, hkv: 8, d: 128, dtype: "bf16" },
    { tokens: 100, hq: 32, hkv: 8, d: 128, dtype: "bf16" },
    { tokens: 600, hq: 32, hkv: 8, d: 128, dtype: "bf16" },
    { tokens: 5, hq: 4, hkv: 1, d: 64, dtype: "f16" },
    { tokens: 2, hq: 16, hkv: 4, d: 66, dtype: "f16" },
    { tokens: 4, hq: 2, hkv: 2, d: 6, dtype: "f32" },
  ] as const)("tokens=$tokens hq=$hq hkv=$hkv d=$d $dtype", ({ tokens, hq, hkv, d, dtype }) => {
    const pageSize = 16,
      numPages = Math.ceil((tokens + 3) / pageSize) + 1;
    const qkv = scope.random(rng, [tokens, (hq + 2 * hkv) * d], dtype).tensor;
    const pool = scope.random(rng, [numPages, pageSize, hkv, d], dtype).tensor;
    const slotList = Array.from({ length: tokens }, (_, t) => (t === 1 ? -1 : t + 3));
    const positions = Array.from({ length: tokens }, () => rng.int(0, 131071));
    const invFreq = Float32Array.from({ length: d / 2 }, (_, i) => 1 / 500000 ** ((2 * i) / d));
    const run = (device: "cpu" | "cuda:0") => {
      const on = (t: Tensor) => scope.add(t.to(device));
      const kPages = on(pool),
        vPages = on(pool);
      const q = scope.add(
        kernels.ropeAppendKv({
          qkv: on(qkv),
          kPages,
          vPages,
          positions: scope.ints(positions, undefined, device),
          slots: scope.ints(slotList, undefined, device),
          invFreq: scope.add(Tensor.from(invFreq, [d / 2], { device })),
        }),
      );
      return { q: q.toFloat32Array(), k: kPages.toFloat32Array(), v: vPages.toFloat32Array() };
    };
    const cpu = run("cpu"),
      gpu = run("cuda:0");
    // Same f32 cos/sin and formula: any difference is one rounding of a fused multiply-add.
    expect(relError(gpu.q, cpu.q)).toBeLessThan(dtype === "bf16" ? 4e-3 : 1e-3);
    expect(relError(gpu.k, cpu.k)).toBeLessThan(dtype === "bf16" ? 4e-3 : 1e-3);
    expect(Array.from(gpu.v)).toEqual(Array.from(cpu.v));
  });
});

// linear's ropeAppendKv output (the layer's q|k|v projection): in the GEMV's epilogue at 1-4 tokens
// when d % 4 == 0, else the product into scratch and the ropeAppendKv kernel after it (d = 72
// fuses while the separate kernel takes its element-by-element path, d = 66 does not fuse). On every
// GEMM choice, q and both pools bit for bit what the plain product on the same GEMM followed by
// kernels.ropeAppendKv gives (the epilogue turns each pair by the same cos/sin with the same
// spelt-out multiply-adds), and within the RoPE tolerance above of the CPU. Thousands of heads
// (hidden 16: 0 is random) give each GEMV block more rotated groups than the cos/sin it takes
// before its first sums (128 groups at 1 token, 42 at 3, on a GPU of 132 SMs): the rest take
// theirs in the epilogue.
describeGpu("linear with ropeAppendKv on CUDA", () => {
  test.each([
    { tokens: 1, hq: 32, hkv: 8, d: 128, dtype: "bf16", input: "norm", bias: false, hidden: 0 },
    { tokens: 2, hq: 32, hkv: 8, d: 128, dtype: "bf16", input: "norm", bias: true, hidden: 0 },
    { tokens: 3, hq: 8, hkv: 2, d: 64, dtype: "f16", input: "plain", bias: true, hidden: 0 },
    { tokens: 4, hq: 28, hkv: 4, d: 128, dtype: "bf16", input: "norm", bias: true, hidden: 0 },
    { tokens: 5, hq: 32, hkv: 8, d: 128, dtype: "bf16", input: "norm", bias: false, hidden: 0 },
    { tokens: 2, hq: 16, hkv: 4, d: 66, dtype: "f16", input: "norm", bias: false, hidden: 0 },
    { tokens: 1, hq: 8, hkv: 2, d: 72, dtype: "bf16", input: "plain", bias: true, hidden: 0 },
    { tokens: 1, hq: 6000, hkv: 2, d: 64, dtype: "bf16", input: "norm", bias: false, hidden: 16 },
    { tokens: 3, hq: 1000, hkv: 4, d: 64, dtype: "f16", input: "plain", bias: true, hidden: 16 },
  ] as const)(
    "tokens=$tokens hq=$hq hkv=$hkv d=$d $dtype input $input bias $bias",
    ({ tokens, hq, hkv, d, dtype, input, bias, hidden: fixedHidden }) => {
      const hidden = fixedHidden || 8 * rng.int(8, 96),
        pageSize = 16,
        numPages = 3;
      const on = (t: Tensor, device: "cpu" | "cuda:0") => scope.add(t.to(device));
      const x = scope.random(rng, [tokens, hidden], dtype).tensor;
      const weight = scope.random(rng, [(hq + 2 * hkv) * d, hidden], dtype).tensor;
      const b = bias ? scope.random(rng, [(hq + 2 * hkv) * d], dtype).tensor : undefined;
      const g = scope.random(rng, [hidden], dtype).tensor;
      const pool = scope.random(rng, [numPages, pageSize, hkv, d], dtype).tensor;
      const slotList = Array.from({ length: tokens }, (_, t) => (t === 1 ? -1 : 2 * t + 5));
      const positions = Array.from({ length: tokens }, () => rng.int(0, 131071));
      const invFreq = Float32Array.from({ length: d / 2 }, (_, i) => 1 / 500000 ** ((2 * i) / d));
      const run = (device: "cpu" | "cuda:0", fused: boolean, gemm?: kernels.GemmChoice) => {
        const kPages = on(pool, device),
          vPages = on(pool, device);
        const target = {
          kPages,
          vPages,
          positions: scope.ints(positions, undefined, device),
          slots: scope.ints(slotList, undefined, device),
          invFreq: scope.add(Tensor.from(invFreq, [d / 2], { device })),
        };
        const common = {
          x: on(x, device),
          weight: on(weight, device),
          bias: b && on(b, device),
          ...(input === "norm" && { norm: { weight: on(g, device), eps: 1e-5 } }),
          gemm,
        };
        const q = scope.add(Tensor.empty([tokens, hq, d], dtype, device));
        if (fused) kernels.linear({ ...common, out: q, ropeAppendKv: target });
        else kernels.ropeAppendKv({ qkv: scope.add(kernels.linear(common)), ...target, q });
        return { q: q.toArray(), k: kPages.toArray(), v: vPages.toArray(), qf: q.toFloat32Array(), kf: kPages.toFloat32Array() };
      };
      const cpu = run("cpu", true);
      const choices = tokens <= 4 ? (["gemv-only", "gemv", "cublasLt", "auto"] as const) : (["gemv", "cublasLt", "auto"] as const);
      for (const gemm of choices) {
        const fused = run("cuda:0", true, gemm),
          separate = run("cuda:0", false, gemm);
        const same = (a: ArrayLike<number>, c: ArrayLike<number>) => Array.from(a).every((v, i) => Object.is(v, c[i]));
        expect({ gemm, seed: rng.seed, q: same(fused.q, separate.q), k: same(fused.k, separate.k), v: same(fused.v, separate.v) }).toEqual({
          gemm,
          seed: rng.seed,
          q: true,
          k: true,
          v: true,
        });
        // The products differ from the CPU's by the sums' order and the dtype's rounding; the turn
        // adds one rounding of a fused multiply-add.
        const tol = dtype === "bf16" ? 2e-2 : 5e-3;
        expect({ gemm, seed: rng.seed, q: relError(fused.qf, cpu.qf) < tol, k: relError(fused.kf, cpu.kf) < tol }).toEqual({
          gemm,
          seed: rng.seed,
          q: true,
          k: true,
        });
      }
    },
  );
});

describeGpu("reads that do not wait", () => {
  test("a pending read gives the contents as they were when it was queued, not what later work writes", () => {
    const n = rng.int(1, 4096);
    const first = Int32Array.from({ length: n }, () => rng.int(-1e9, 1e9));
    const t = scope.add(Tensor.from(first, [n], { device: "cuda:0" }));
    const src = scope.add(
      Tensor.from(
        Int32Array.from({ length: n }, () => rng.int(-1e9, 1e9)),
        [n],
        { device: "cuda:0" },
      ),
    );
    // Queued behind the read: a device copy over the tensor, which the read must not see, and
    // kernels after it (that the read does not wait for them is measured, not tested: bench/README.md).
    const pending = t.readLater();
    t.copyFrom(src);
    const logits = scope.random(rng, [64, 32000], "bf16", "cuda:0").tensor;
    for (let i = 0; i < 20; i++) scope.add(kernels.argmax({ logits }));
    expect(Array.from(pending.wait())).toEqual(Array.from(first));
    expect(Array.from(t.toArray())).toEqual(Array.from(src.toArray()));
  });

  test("overlapping slices of a CUDA tensor copy as if through a temporary", () => {
    const n = rng.int(8, 4096);
    const values = Int32Array.from({ length: n }, () => rng.int(-1e9, 1e9));
    const whole = scope.add(Tensor.from(values, [n], { device: "cuda:0" }));
    const shift = rng.int(1, n - 1);
    scope.add(whole.rows(0, n - shift)).copyFrom(scope.add(whole.rows(shift, n - shift)));
    expect(Array.from(whole.toArray())).toEqual([...values.slice(shift), ...values.slice(n - shift)]);
  });

  test("a graph handle given where a read handle goes is an error, not a crash", () => {
    const table = scope.random(rng, [10, 16], "bf16", "cuda:0").tensor;
    const out = scope.add(Tensor.empty([2, 16], "bf16", "cuda:0"));
    const block = scope.add(Tensor.empty([2], "i32", "cuda:0"));
    const graph = CudaGraph.capture(block, () => kernels.embedding({ ids: block, table, out }));
    try {
      // The native handle inside CudaGraph, as the addon's own callers hold it.
      const handle = (graph as unknown as { handle: NativeReadHandle }).handle;
      expect(() => addon().finishRead(handle)).toThrow(/finishRead: expected a read handle \(from startRead\)/);
      // The graph is untouched by the refusal.
      const ids = [rng.int(0, 9), rng.int(0, 9)];
      graph.launch(Int32Array.from(ids));
      const rows = table.toFloat32Array();
      expect(Array.from(out.toFloat32Array())).toEqual(ids.flatMap((r) => Array.from(rows.subarray(r * 16, r * 16 + 16))));
    } finally {
      graph.dispose();
    }
  });

  test("synchronize returns after the work queued before it, and refuses a capture in progress", () => {
    const logits = scope.random(rng, [64, 32000], "bf16", "cuda:0").tensor;
    const out = scope.add(Tensor.empty([64], "i32", "cuda:0"));
    for (let i = 0; i < 20; i++) kernels.argmax({ logits, out });
    synchronize("cuda:0");
    const want = scope.add(kernels.argmax({ logits: scope.add(logits.to("cpu")) }));
    expect(Array.from(out.readLater().wait())).toEqual(Array.from(want.toArray()));
    const block = scope.add(Tensor.empty([4], "i32", "cuda:0"));
    expect(() => CudaGraph.capture(block, () => synchronize("cuda:0"))).toThrow(/being captured into a CUDA graph; end the capture first/);
  });

  test("a read larger than a pending read takes is refused with the remedy", () => {
    const t = scope.add(Tensor.empty([16385], "i32", "cuda:0"));
    expect(() => t.readLater()).toThrow(/65540 bytes, more than the 65536 a pending read takes; use toArray\(\)/);
  });
});

describeGpu("CUDA graphs", () => {
  test("a replay reads each launch's indices, and a launch whose indices fail the recorded checks changes nothing", () => {
    const table = scope.random(rng, [10, 16], "bf16", "cuda:0").tensor;
    const out = scope.add(Tensor.empty([4, 16], "bf16", "cuda:0"));
    const block = scope.add(Tensor.empty([6], "i32", "cuda:0"));
    const ids = scope.add(block.rows(2, 4));
    const graph = CudaGraph.capture(block, () => kernels.embedding({ ids, table, out }));
    try {
      const rows = table.toFloat32Array();
      const expectRows = (which: number[]) =>
        expect(Array.from(out.toFloat32Array())).toEqual(which.flatMap((r) => Array.from(rows.subarray(r * 16, r * 16 + 16))));
      graph.launch(Int32Array.from([7, 7, 3, 1, 4, 1]));
      expectRows([3, 1, 4, 1]);
      graph.launch(Int32Array.from([0, 0, 9, 2, 6, 5]));
      expectRows([9, 2, 6, 5]);
      expect(() => graph.launch(Int32Array.from([0, 0, 9, 10, 6, 5]))).toThrow(/embedding: ids\[1\] = 10 is outside the vocabulary 0..9/);
      expect(() => graph.launch(new Int32Array(5))).toThrow(/data has 5 elements but the graph's input holds 6/);
      expectRows([9, 2, 6, 5]);
    } finally {
      graph.dispose();
    }
    expect(() => graph.launch(new Int32Array(6))).toThrow(/disposed/);
  });

  test("a launch copies only the ranges it names; a bad range or a failed check leaves the device as it was", () => {
    const table = scope.random(rng, [10, 16], "bf16", "cuda:0").tensor;
    const out = scope.add(Tensor.empty([4, 16], "bf16", "cuda:0"));
    const block = scope.add(Tensor.empty([4], "i32", "cuda:0"));
    const graph = CudaGraph.capture(block, () => kernels.embedding({ ids: block, table, out }));
    try {
      const rows = table.toFloat32Array();
      const expectRows = (which: number[]) =>
        expect(Array.from(out.toFloat32Array())).toEqual(which.flatMap((r) => Array.from(rows.subarray(r * 16, r * 16 + 16))));
      // The first launch copies everything, whatever it names.
      graph.launch(Int32Array.from([3, 1, 4, 1]), Int32Array.of(0, 1));
      expectRows([3, 1, 4, 1]);
      // Elements 1 and 3 change, only 1..2 is named: element 3 keeps its old value.
      graph.launch(Int32Array.from([3, 5, 9, 2]), Int32Array.of(1, 2));
      expectRows([3, 5, 9, 1]);
      graph.launch(Int32Array.from([3, 5, 9, 2]), Int32Array.of(3, 1, 0, 0));
      expectRows([3, 5, 9, 2]);
      expect(() => graph.launch(Int32Array.from([3, 5, 9, 2]), Int32Array.of(2, 3))).toThrow(
        /changed range \(2, 3\) is outside the input's 4 elements/,
      );
      expect(() => graph.launch(Int32Array.from([3, 5, 9, 2]), Int32Array.of(2))).toThrow(/\(start, count\) pairs/);
      // A check reads what the device would hold: the named change merged with what it holds.
      expect(() => graph.launch(Int32Array.from([3, 5, 9, 10]), Int32Array.of(3, 1))).toThrow(/ids\[3\] = 10 is outside the vocabulary/);
      expectRows([3, 5, 9, 2]);
      // After a failed check the next launch copies all of its data, named or not.
      graph.launch(Int32Array.from([6, 5, 3, 5]), Int32Array.of(0, 1));
      expectRows([6, 5, 3, 5]);
    } finally {
      graph.dispose();
    }
  });

  // Decode attention's recorded check keeps, per page-table row, how many entries it has found
  // to be pages, and checks a row again from the first entry a launch names changed, or where
  // its sequence grows past them. Entries past a sequence's pages are never read, so they may
  // hold anything until it grows onto them.
  test("decode attention's page-table check follows rows that change and sequences that grow", () => {
    const pageSize = 4,
      numPages = 6,
      width = 3,
      hq = 4,
      hkv = 2,
      d = 64;
    const kPages = scope.random(rng, [numPages, pageSize, hkv, d], "bf16", "cuda:0").tensor;
    const vPages = scope.random(rng, [numPages, pageSize, hkv, d], "bf16", "cuda:0").tensor;
    const q = scope.random(rng, [2, hq, d], "bf16", "cuda:0").tensor;
    const out = scope.add(Tensor.empty([2, hq, d], "bf16", "cuda:0"));
    // The block: seqLens [2] | pageTable [2, width].
    const block = scope.add(Tensor.empty([2 + 2 * width], "i32", "cuda:0"));
    const seqLens = scope.add(block.rows(0, 2));
    const pageTable = scope.add(scope.add(block.rows(2, 2 * width)).reshape([2, width]));
    const graph = CudaGraph.capture(block, () => kernels.decodeAttention({ q, kPages, vPages, pageTable, seqLens, out }));
    const lens = Int32Array.of(0, 1),
      table = Int32Array.of(2, 3, 4, 5, 6, 7);
    const row1At = 2 + width;
    const data = () => Int32Array.from([...lens, ...table]);
    const expectEager = () => {
      const want = scope.add(
        kernels.decodeAttention({
          q,
          kPages,
          vPages,
          pageTable: scope.ints(Array.from(table), [2, width], "cuda:0"),
          seqLens: scope.ints(Array.from(lens), [2], "cuda:0"),
        }).out,
      );
      expect(Array.from(out.toFloat32Array())).toEqual(Array.from(want.toFloat32Array()));
    };
    try {
      // Row 0 uses one page and row 1 two; past them sit pages the pool does not have.
      lens.set([pageSize, pageSize + 1]);
      table.set([3, numPages, numPages + 5, 1, 4, -1]);
      graph.launch(data());
      expectEager();
      // Row 0 grows onto its second entry; only the lengths are named changed.
      lens.set([pageSize + 2, pageSize + 1]);
      expect(() => graph.launch(data(), Int32Array.of(0, 2))).toThrow(
        new RegExp(`pageTable\\[0\\] entry 1 is page ${numPages}, outside the pool's pages 0..${numPages - 1}`),
      );
      // After the failure everything is copied and checked again.
      table.set([3, 0, numPages + 5, 1, 4, -1]);
      graph.launch(data(), Int32Array.of(0, 2));
      expectEager();
      // Row 1 shrinks and grows back onto entries found to be pages before: nothing new to check.
      lens.set([pageSize + 2, 1]);
      graph.launch(data(), Int32Array.of(0, 2));
      expectEager();
      lens.set([pageSize + 2, pageSize + 3]);
      graph.launch(data(), Int32Array.of(0, 2));
      expectEager();
      // Row 1 is named changed: its used entries are checked again, and a bad one refused ...
      table.set([1, numPages + 1, -1], width);
      expect(() => graph.launch(data(), Int32Array.of(row1At, width))).toThrow(
        new RegExp(`pageTable\\[1\\] entry 1 is page ${numPages + 1}, outside`),
      );
      // ... and new pages in it are read.
      table.set([2, 0, -1], width);
      graph.launch(data());
      expectEager();
      table.set([5, 3, -1], width);
      graph.launch(data(), Int32Array.of(row1At, width));
      expectEager();
      // A launch may name part of a row: a used entry in it is checked again.
      table[width + 1] = numPages + 2;
      expect(() => graph.launch(data(), Int32Array.of(row1At + 1, 1))).toThrow(
        new RegExp(`pageTable\\[1\\] entry 1 is page ${numPages + 2}, outside`),
      );
      table[width + 1] = 3;
      graph.launch(data());
      expectEager();
      // A range from the middle of row 0 into row 1 reaches row 1's first entry.
      table[width] = numPages + 3;
      expect(() => graph.launch(data(), Int32Array.of(3, width))).toThrow(
        new RegExp(`pageTable\\[1\\] entry 0 is page ${numPages + 3}, outside`),
      );
      table[width] = 5;
      graph.launch(data(), Int32Array.of(3, width));
      expectEager();
      // A launch that names no changes has everything checked.
      table[width] = numPages + 4;
      expect(() => graph.launch(data())).toThrow(new RegExp(`pageTable\\[1\\] entry 0 is page ${numPages + 4}, outside`));
    } finally {
      graph.dispose();
    }
  });

  test("recording refuses allocations and index tensors outside the input, then the device works as before", () => {
    const table = scope.random(rng, [10, 16], "bf16", "cuda:0").tensor;
    const block = scope.add(Tensor.empty([4], "i32", "cuda:0"));
    expect(() => CudaGraph.capture(block, () => kernels.embedding({ ids: block, table }))).toThrow(
      /device memory cannot be allocated on cuda:0 while a CUDA graph is being captured/,
    );
    const other = scope.ints([1, 2], undefined, "cuda:0");
    const out = scope.add(Tensor.empty([2, 16], "bf16", "cuda:0"));
    expect(() => CudaGraph.capture(block, () => kernels.embedding({ ids: other, table, out }))).toThrow(
      /must be views of the capture's input/,
    );
    const again = scope.add(kernels.embedding({ ids: other, table }));
    expect(again.toFloat32Array().length).toBe(32);
  });
});

describe.each(fixtureModels)("%s: decode steps replayed from CUDA graphs equal the eager steps", (name) => {
  if (!status.available) {
    test.skip("skipped: no CUDA", () => undefined);
    return;
  }
  test("batch 3 then 2, through a ring, hybrid layers and a page-table regrowth", async () => {
    const before = memoryUsage().cuda;
    // Two-token pages: the graph's table width (64 pages) is outgrown after 128 tokens.
    const model = await loadModel(path.join(fixtureRoot, name), { device: "cuda:0", kvCacheBytes: 8 * 2 ** 20, pageSize: 2 });
    const vocab = model.config.vocabSize;
    const prompts = readReference(name)
      .cases.slice(0, 3)
      .map((c) => c.ids);
    // Sequence 1 goes hybrid: its odd layers become rings, narrower than the full layers.
    const start = () =>
      prefilledSequences(model.decoder, prompts, (s, i) => {
        if (i === 1) s.caches.forEach((_, l) => l % 2 && s.cutToStreaming(l, 2, 6));
      });
    const graphSeqs = start(),
      eagerSeqs = start();
    const eager = (seqs: Sequence[], ids: number[]) => {
      process.env.LIGHTTRANSFER_DECODE_GRAPHS = "off";
      try {
        return model.decoder.step(seqs, ids, "logits");
      } finally {
        delete process.env.LIGHTTRANSFER_DECODE_GRAPHS;
      }
    };
    try {
      let worst = 0;
      for (let step = 0; step < 140; step++) {
        const batch = step < 70 ? 3 : 2;
        const ids = Array.from({ length: batch }, () => rng.int(0, vocab - 1));
        const got = model.decoder.step(graphSeqs.slice(0, batch), ids, "logits");
        const want = eager(eagerSeqs.slice(0, batch), ids);
        worst = Math.max(worst, relError(got, want));
      }
      const stats = model.decoder.stats;
      expect(stats.unavailable).toBeUndefined();
      expect(stats.graphSteps).toBe(140);
      expect(stats.eagerSteps).toEqual({ "graphs off": 140 });
      // One per batch size, and (for full caches, not Mistral's 16-token ring) wider tables: in
      // batch 2, first for the layers where sequence 1 (53 + 75 tokens) is full, later for those
      // where it is a ring and sequence 0 (12 + 140 tokens) sets the width.
      expect(stats.recordings).toBe(name === "mistral-tiny" ? 2 : 4);
      // Both paths round every op to bf16; the graph's GEMMs (q|k|v stacked) may sum in another order.
      expect(worst).toBeLessThan(2e-2);
      expect(graphSeqs.map((s) => s.length)).toEqual(eagerSeqs.map((s) => s.length));
    } finally {
      for (const s of [...graphSeqs, ...eagerSeqs]) s.dispose();
      await model.dispose();
    }
    expect(memoryUsage().cuda).toBe(before);
  });
});

describe.each(fixtureModels)("%s: a greedy step replayed from a CUDA graph picks the argmax of the step's logits", (name) => {
  if (!status.available) {
    test.skip("skipped: no CUDA", () => undefined);
    return;
  }
  test("batch 3, 40 steps", async () => {
    const model = await loadModel(path.join(fixtureRoot, name), { device: "cuda:0", kvCacheBytes: 8 * 2 ** 20 });
    const vocab = model.config.vocabSize;
    const prompts = readReference(name)
      .cases.slice(0, 3)
      .map((c) => c.ids);
    const start = () => prefilledSequences(model.decoder, prompts);
    // Both sets step through the same recording (same batch and widths), so their logits are the
    // same numbers and the device's argmax must agree with the host's exactly.
    const logitSeqs = start(),
      greedySeqs = start();
    try {
      let ids = prompts.map((p) => p[p.length - 1]);
      for (let step = 0; step < 40; step++) {
        const logits = model.decoder.step(logitSeqs, ids, "logits");
        const tokens = model.decoder.step(greedySeqs, ids, "argmax");
        const want = ids.map((_, b) => argmaxOf(logits.subarray(b * vocab, (b + 1) * vocab)));
        expect(Array.from(tokens)).toEqual(want);
        ids = want;
      }
      expect(model.decoder.stats.graphSteps).toBe(80);
      // The greedy set alone: the first step rewrites every table row (the other set's were on
      // the device); after it, a step copies only ids, positions, slots and lengths, and where
      // a sequence gained a page (once per 16 steps each), that page's entry in the rows of the
      // layers whose cache grew: at most one entry per row, never a whole row.
      const layers = model.config.layers;
      const header = 4 * (2 * 3 + 2 * layers * 3);
      let headerOnly = 0,
        withPages = 0;
      for (let step = 0; step < 20; step++) {
        const before = model.decoder.stats.uploadedBytes;
        ids = Array.from(model.decoder.step(greedySeqs, ids, "argmax"));
        const copied = model.decoder.stats.uploadedBytes - before;
        expect(copied).toBeGreaterThanOrEqual(header);
        if (copied === header) headerOnly++;
        else if (step > 0) {
          withPages++;
          expect(copied - header).toBeLessThanOrEqual(4 * layers * 3);
        }
      }
      expect(headerOnly).toBeGreaterThanOrEqual(20 - 1 - 2 * 3);
      // Mistral's layers are 16-token rings, which gain no page once full.
      if (name !== "mistral-tiny") expect(withPages).toBeGreaterThan(0);
    } finally {
      for (const s of [...logitSeqs, ...greedySeqs]) s.dispose();
      await model.dispose();
    }
  });
});

/** Index of the largest value, lowest on ties (written here, apart from the library's). */
function argmaxOf(row: Float32Array): number {
  let best = 0;
  row.forEach((v, i) => {
    if (v > row[best]) best = i;
  });
  return best;
}
