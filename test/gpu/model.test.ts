// Model operations and whole models on CUDA: ops against the CPU ops, the transformers
// fixtures in bf16/f16, memory freed by dispose() (out of memory: exclusive/oom.test.ts).
import * as fs from "node:fs";
import * as path from "node:path";
import { cudaStatus, type DeviceName, kernels, loadModel, type Model, memoryUsage, Tensor } from "../../lib";
import { Sampler } from "../../lib/generate/sampling";
import { sampleOnDevice } from "../../lib/generate/step";
import { CudaGraph } from "../../lib/runtime/cuda-graph";
import { fixtureModels, fixtureRoot, prefilledSequences, readLogits, readReference } from "../helpers/fixtures";
import { collectGarbage } from "../helpers/gc";
import { bits, describeWithCuda, relError } from "../helpers/gpu";
import { copyFixture, editJson, fixtureTensors, fixtureWithTensors, storedF32 } from "../helpers/model-dir";
import { errorToScale, type FloatDType, Random, roundArray, roundTo, worstBeyondBound } from "../helpers/reference";
import { negativeGateSwiGlu, plantedLogits, randomLinear, TensorScope } from "../helpers/tensors";

const status = cudaStatus();
const describeGpu = describeWithCuda("model");

const rng = new Random();
const scope = new TensorScope();
afterEach(() => scope.dispose());

function pair(shape: number[], dtype: "bf16" | "f16" | "f32") {
  const cpu = scope.random(rng, shape, dtype).tensor;
  return { cpu, gpu: scope.add(cpu.to("cuda:0")) };
}

/** An empty tensor of this shape on each side, for an op's output. */
function emptyPair(shape: number[], dtype: "bf16" | "f16" | "f32") {
  return { cpu: scope.add(Tensor.empty(shape, dtype, "cpu")), gpu: scope.add(Tensor.empty(shape, dtype, "cuda:0")) };
}

describeGpu("CUDA model ops equal the CPU ops", () => {
  // bf16 keeps 8 significant bits: one rounding of each output gives ~2e-3 relative error.
  const bound = 1e-2;
  test.each([
    [1, 4096, 4096],
    [7, 200, 96],
    [64, 1024, 4096],
    [257, 96, 200],
  ])("linear m=%i n=%i k=%i", (m, n, k) => {
    const x = pair([m, k], "bf16"),
      w = pair([n, k], "bf16"),
      b = pair([n], "bf16");
    const want = scope.add(kernels.linear({ x: x.cpu, weight: w.cpu, bias: b.cpu }));
    const got = scope.add(kernels.linear({ x: x.gpu, weight: w.gpu, bias: b.gpu }));
    expect(relError(got.toFloat32Array(), want.toFloat32Array())).toBeLessThan(bound);
  });
  test("rmsNorm with residual, rope, swiGlu, embedding", () => {
    const x = pair([33, 512], "bf16"),
      r = pair([33, 512], "bf16"),
      w = pair([512], "bf16");
    const wantN = scope.add(kernels.rmsNorm({ x: x.cpu, residual: r.cpu, weight: w.cpu }));
    const gotN = scope.add(kernels.rmsNorm({ x: x.gpu, residual: r.gpu, weight: w.gpu }));
    expect(relError(gotN.toFloat32Array(), wantN.toFloat32Array())).toBeLessThan(bound);
    expect(relError(r.gpu.toFloat32Array(), r.cpu.toFloat32Array())).toBeLessThan(bound);

    const q = pair([9, 8, 128], "bf16"),
      k = pair([9, 2, 128], "bf16");
    const positions = Int32Array.from([0, 1, 2, 100, 4095, 8191, 65535, 100000, 131071]);
    const invFreq = Float32Array.from({ length: 64 }, (_, i) => 1 / 500000 ** ((2 * i) / 128));
    for (const dev of ["cpu", "gpu"] as const) {
      const device = dev === "cpu" ? "cpu" : "cuda:0";
      kernels.rope({
        q: q[dev],
        k: k[dev],
        positions: scope.add(Tensor.from(positions, [9], { device })),
        invFreq: scope.add(Tensor.from(invFreq, [64], { device })),
      });
    }
    expect(relError(q.gpu.toFloat32Array(), q.cpu.toFloat32Array())).toBeLessThan(bound);
    expect(relError(k.gpu.toFloat32Array(), k.cpu.toFloat32Array())).toBeLessThan(bound);

    const gu = pair([5, 2 * 300], "bf16");
    expect(
      relError(scope.add(kernels.swiGlu({ x: gu.gpu })).toFloat32Array(), scope.add(kernels.swiGlu({ x: gu.cpu })).toFloat32Array()),
    ).toBeLessThan(bound);

    const table = pair([1000, 64], "bf16");
    const ids = Int32Array.from({ length: 17 }, () => rng.int(0, 999));
    const e1 = scope.add(kernels.embedding({ ids: scope.add(Tensor.from(ids, [17])), table: table.cpu }));
    const e2 = scope.add(kernels.embedding({ ids: scope.add(Tensor.from(ids, [17], { device: "cuda:0" })), table: table.gpu }));
    expect(Array.from(e2.toArray())).toEqual(Array.from(e1.toArray()));
  });
  // 1003 takes the element-wise kernel, 128256 the 16-byte loads; rows 0-3 hold the planted
  // ties, NaNs, signed zeros and subnormals.
  test.each([
    ["f32", 7, 1003],
    ["f32", 6, 128256],
    ["f16", 7, 1003],
    ["f16", 6, 128256],
    ["bf16", 7, 1003],
    ["bf16", 6, 128256],
  ] as Array<[FloatDType, number, number]>)("argmax over %s logits [%i, %i] is the CPU's", (dtype, rows, vocab) => {
    const logits = plantedLogits(rng, rows, vocab, dtype);
    const cpu = scope.add(logits.tensor),
      gpu = scope.add(cpu.to("cuda:0"));
    const want = Array.from(scope.add(kernels.argmax({ logits: cpu })).toArray());
    const got = Array.from(scope.add(kernels.argmax({ logits: gpu })).toArray());
    expect({ seed: rng.seed, got }).toEqual({ seed: rng.seed, got: want });
    expect(got.slice(0, 4)).toEqual(logits.planted);
  });
  // Rows scaled by 8 so that the max shift and the sum both matter; row 0 of the first case holds a NaN.
  test.each([
    ["f32", 5, 1003],
    ["f16", 4, 128256],
    ["bf16", 33, 32000],
  ] as Array<[FloatDType, number, number]>)(
    "tokenLogprobs over %s logits [%i, %i] is the CPU's within f32 summation",
    (dtype, rows, vocab) => {
      let logits = scope.random(rng, [rows, vocab], dtype, "cpu", 8).tensor;
      if (dtype === "f32") {
        const raw = logits.toFloat32Array();
        raw[vocab - 1] = Number.NaN;
        logits = scope.add(Tensor.from(raw, [rows, vocab]));
      }
      const targets = Array.from({ length: rows }, () => rng.int(0, vocab - 1));
      const run = (device: "cpu" | "cuda:0") => {
        const l = device === "cpu" ? logits : scope.add(logits.to(device));
        return scope.add(kernels.tokenLogprobs({ logits: l, targets: scope.ints(targets, [rows], device) })).toFloat32Array();
      };
      const want = run("cpu"),
        got = run("cuda:0");
      for (let r = 0; r < rows; r++) {
        if (Number.isNaN(want[r])) expect(got[r]).toBeNaN();
        else if (!(Math.abs(got[r] - want[r]) <= 1e-5 * Math.max(1, Math.abs(want[r]))))
          throw new Error(`row ${r}: ${got[r]} vs the CPU's ${want[r]} (seed ${rng.seed})`);
      }
    },
  );
  // [5, 1003] takes the element-wise loads, [4, 128256] and [33, 32000] the 16-byte ones. Planted
  // rows, where the row exists: 0 ties with the k-th largest (count > k), 1 NaNs, 2 -Infinity in
  // half the row, 3 all equal (count = vocab > capacity), 4 fewer numbers than k (NaN but for
  // k/2 values and three -Infinity), 5 all <= 0 with zeros of both signs and a positive subnormal
  // on top, 6 all <= 0 with -0 before +0 (max is the first: -0).
  const topCases: Array<[FloatDType, number, number, number]> = [];
  for (const dtype of ["f32", "f16", "bf16"] as const)
    for (const [rows, vocab] of [
      [5, 1003],
      [4, 128256],
      [33, 32000],
    ])
      for (const k of [1, 40, 256]) topCases.push([dtype, rows, vocab, k]);
  test.each(topCases)("topCandidates over %s logits [%i, %i], k %i, is the CPU's", (dtype, rows, vocab, k) => {
    const capacity = 2 * k;
    const raw = rng.normals(rows * vocab, 3);
    const row = (r: number) => raw.subarray(r * vocab, (r + 1) * vocab);
    const col = () => rng.int(0, vocab - 1);
    const kth = Array.from(roundArray(dtype, row(0))).sort((a, b) => b - a)[k - 1];
    for (let planted = 0; planted < 3; ) {
      const j = col();
      if (roundTo(dtype, row(0)[j]) < kth) {
        row(0)[j] = kth;
        planted++;
      }
    }
    for (let i = 0; i < vocab / 10; i++) row(1)[col()] = NaN;
    for (let i = 0; i < vocab / 2; i++) row(2)[col()] = -Infinity;
    row(3).fill(rng.normal());
    if (rows > 4) {
      row(4).fill(NaN);
      for (let i = 0; i < k >> 1; i++) row(4)[col()] = rng.normal() * 3;
      for (let i = 0; i < 3; i++) row(4)[col()] = -Infinity;
    }
    for (const r of [5, 6].filter((r) => r < rows)) row(r).forEach((v, i, all) => (all[i] = -Math.abs(v)));
    if (rows > 6) {
      for (let i = 0; i < Math.max(1, k >> 1); i++) {
        row(5)[col()] = -0;
        row(5)[col()] = 0;
      }
      row(5)[col()] = dtype === "f16" ? 2 ** -24 : 2 ** -130;
      const a = rng.int(0, vocab - 2);
      row(6)[a] = -0;
      row(6)[rng.int(a + 1, vocab - 1)] = 0;
    }
    const temperature = Float32Array.from({ length: rows }, () => 0.3 + 1.7 * rng.next());
    const cpu = scope.add(Tensor.from(raw, [rows, vocab], { dtype }));
    const run = (logits: Tensor, device: DeviceName) => {
      const c = kernels.topCandidates({ logits, temperature: scope.add(Tensor.from(temperature, [rows], { device })), k });
      Object.values(c).forEach((t) => scope.add(t));
      const ids = c.ids.toArray() as Int32Array,
        scores = c.scores.toFloat32Array();
      const count = Array.from(c.count.toArray() as Int32Array);
      // (id, score) pairs by id: the stored order is free.
      const stored = (r: number) =>
        Array.from({ length: Math.min(count[r], capacity) }, (_, i) => [ids[r * capacity + i], scores[r * capacity + i]]).sort(
          (x, y) => x[0] - y[0],
        );
      return { count, max: Array.from(c.max.toFloat32Array()), mass: c.mass.toFloat32Array(), stored };
    };
    const want = run(cpu, "cpu"),
      got = run(scope.add(cpu.to("cuda:0")), "cuda:0");
    // toEqual compares numbers with Object.is: max must match to the sign of a zero.
    expect({ seed: rng.seed, max: got.max, count: got.count }).toEqual({ seed: rng.seed, max: want.max, count: want.count });
    expect([want.count[0] > k, want.count[3]]).toEqual([true, vocab]);
    const values = cpu.toFloat32Array();
    let worstMass = 0;
    for (let r = 0; r < rows; r++) {
      const label = `row ${r} (seed ${rng.seed})`;
      if (want.count[r] <= capacity) {
        expect([label, got.stored(r)]).toEqual([label, want.stored(r)]);
      } else {
        // Which candidates an overflowing row stores is free: capacity distinct ones, at least the k-th.
        const numbers = Array.from(values.subarray(r * vocab, (r + 1) * vocab)).filter((v) => !Number.isNaN(v));
        const threshold = numbers.sort((x, y) => y - x)[Math.min(k, numbers.length) - 1];
        const pairs = got.stored(r);
        expect([label, new Set(pairs.map(([id]) => id)).size]).toEqual([label, capacity]);
        for (const [id, score] of pairs) expect([label, id, score, score >= threshold]).toEqual([label, id, values[r * vocab + id], true]);
      }
      worstMass = Math.max(worstMass, want.mass[r] === 0 ? Math.abs(got.mass[r]) : Math.abs(got.mass[r] / want.mass[r] - 1));
    }
    expect({ seed: rng.seed, worstMass, ok: worstMass < 1e-5 }).toMatchObject({ ok: true });
  });
  // Rows: 3 of every 4 list a random set of distinct tokens in random order, the rest none; with
  // 33 rows, row 1 lists the whole vocabulary. Magnitudes stay >= 1e-3 so that neither a logit
  // nor its penalised value is subnormal, where CUDA flushes to zero.
  const penaltyCases: Array<[FloatDType, number, number]> = [];
  for (const dtype of ["f32", "f16", "bf16"] as const)
    for (const [rows, vocab] of [
      [1, 1003],
      [1, 32000],
      [33, 1003],
      [33, 32000],
    ])
      penaltyCases.push([dtype, rows, vocab]);
  test.each(penaltyCases)("repetitionPenalty on %s logits [%i, %i] is the CPU's, bit for bit", (dtype, rows, vocab) => {
    const raw = rng.normals(rows * vocab, 3).map((v) => (Math.abs(v) < 1e-3 ? Math.sign(v) * 1e-3 : v));
    const ids: number[] = [],
      offsets = [0];
    const touched = new Uint8Array(rows * vocab);
    const columns = Array.from({ length: vocab }, (_, i) => i);
    for (let r = 0; r < rows; r++) {
      const count = r % 4 === 3 ? 0 : rows > 1 && r === 1 ? vocab : rng.int(1, Math.floor(0.6 * vocab));
      for (const id of rng.shuffle(columns).slice(0, count)) {
        ids.push(id);
        touched[r * vocab + id] = 1;
      }
      offsets.push(ids.length);
    }
    const penalty = Float32Array.from({ length: rows }, () => 0.5 + 1.5 * rng.next());
    const cpu = scope.add(Tensor.from(raw, [rows, vocab], { dtype })),
      gpu = scope.add(cpu.to("cuda:0"));
    const before = bits(cpu),
      values = cpu.toFloat32Array();
    for (const [logits, device] of [
      [cpu, "cpu"],
      [gpu, "cuda:0"],
    ] as Array<[Tensor, DeviceName]>) {
      kernels.repetitionPenalty({
        logits,
        ids: scope.add(Tensor.from(Int32Array.from(ids), [ids.length], { device })),
        offsets: scope.add(Tensor.from(Int32Array.from(offsets), [rows + 1], { device })),
        penalty: scope.add(Tensor.from(penalty, [rows], { device })),
      });
    }
    const want = bits(cpu),
      got = bits(gpu),
      gotValues = gpu.toFloat32Array();
    // The definition too, so that a kernel doing nothing cannot pass: f64 division and product of
    // two f32 values, then Math.fround, round as f32 arithmetic does.
    const definition = (i: number) => {
      const x = values[i],
        p = penalty[Math.floor(i / vocab)];
      return roundTo(dtype, x > 0 ? x / p : x * p);
    };
    let differ = 0,
      first = -1,
      moved = 0,
      wrong = 0;
    for (let i = 0; i < want.length; i++) {
      if (got[i] !== want[i]) {
        differ++;
        if (first < 0) first = i;
      }
      if (!touched[i] && got[i] !== before[i]) moved++;
      if (touched[i] && !Object.is(gotValues[i], definition(i))) wrong++;
    }
    const at = first < 0 ? null : { row: Math.floor(first / vocab), id: first % vocab, got: got[first], want: want[first] };
    expect({ seed: rng.seed, differ, at, moved, wrong }).toEqual({ seed: rng.seed, differ: 0, at: null, moved: 0, wrong: 0 });
  });
  // Linear on its two CUDA paths: the small-batch GEMV (1 to 4 rows, k % 8 == 0; the norm and the
  // accumulation inside it, after the SwiGLU kernel) and the library (cuBLASLt, after the norm or
  // SwiGLU kernel), each element against float64 from the definition (referenceLinear's bound;
  // half an ulp is at most 2^-8 of a value in bf16, 2^-11 in f16).
  test.each(
    [
      ["bf16", 1, 4096, 4096],
      ["bf16", 4, 6144, 4096],
      ["f16", 2, 4096, 14336],
      ["bf16", 3, 0, 0],
      ["f16", 4, 0, 0],
      ["bf16", 5, 0, 0],
      ["bf16", 1, 0, 0],
    ].flatMap(([dtype, m, n, k]) =>
      (["plain", "norm", "swiGlu"] as const).map(
        (input) => [dtype as "bf16" | "f16", m as number, n as number, k as number, input] as const,
      ),
    ),
  )("linear %s, %i rows, n=%i k=%i (0: random), input %s, GEMV and library, each element in float64", (dtype, m, n0, k0, input) => {
    const n = n0 || rng.int(1, 300);
    // A random k is a multiple of 8 (the GEMV's case) three times in four.
    const k = k0 || (rng.next() < 0.75 ? 8 * rng.int(1, 700) : rng.int(1, 5000));
    const accumulate = rng.next() < 0.5;
    const call = randomLinear(scope, rng, { m, n, k, input, accumulate, dtype, weightType: dtype, device: "cuda:0" });
    const ulp = dtype === "bf16" ? 2 ** -8 : 2 ** -11;
    // The GEMV sums in f32 to the end; cuBLAS may also round split-K partial sums to the dtype.
    const strict = call.reference(ulp),
      library = call.reference(ulp, true);
    const gemv = m <= 4 && k % 8 === 0;
    const check = (gemm: kernels.GemmChoice) => {
      const out = scope.add(Tensor.empty([m, n], dtype, "cuda:0"));
      out.copyFrom(call.before.tensor);
      call.run(out, gemm);
      const got = out.toFloat32Array();
      // Rounding errors are independent, so their root mean square stays near half an ulp of what
      // they act on; an error common to all elements (a wrong scale, a missing rounding) shows here.
      const { want, bound, scale } = gemm === "gemv-only" || (gemm === "gemv" && gemv) ? strict : library;
      const rms = errorToScale(got, want, scale) < 2 * ulp;
      return { gemm, seed: rng.seed, m, n, k, accumulate, worst: worstBeyondBound(got, want, bound), rms };
    };
    // "gemv-only" insists on the small-batch GEMV (an error where it does not apply), so its cases
    // cannot quietly run on the library; "gemv" is what a model run with the GEMV does, "cublasLt"
    // the library, "auto" the default (either, by shape: checked apart below).
    for (const gemm of gemv ? (["gemv-only", "gemv", "cublasLt", "auto"] as const) : (["gemv", "cublasLt", "auto"] as const))
      expect(check(gemm)).toEqual({ gemm, seed: rng.seed, m, n, k, accumulate, worst: "none", rms: true });
    if (!gemv) expect(() => check("gemv-only")).toThrow(/gemv-only was asked for but the small-batch GEMV does not take this call/);
  });
  // The SwiGLU output (the layer's gate|up) on both paths: in the GEMV's epilogue (1-4 rows, k %
  // 8 == 0) and as the library's product followed by the SwiGLU kernel. Each element against
  // float64 (referenceSwiGluOutput), and every bit against the plain product on the same GEMM
  // followed by kernels.swiGlu, which is what the epilogue stands in for. Odd and tiny inner
  // sizes, and inner past twice the GEMV's grid (blocks then take several groups, the last one
  // half), are fixed cases with a bias (undefined: half the time): the epilogue's tails.
  test.each([
    ["bf16", 1, 14336, 4096, "norm", undefined],
    ["bf16", 2, 0, 0, "norm", undefined],
    ["f16", 1, 0, 0, "plain", undefined],
    ["bf16", 3, 0, 0, "plain", undefined],
    ["bf16", 4, 0, 0, "norm", undefined],
    ["f16", 5, 0, 0, "norm", undefined],
    ["bf16", 1, 0, 100, "plain", undefined],
    ["bf16", 1, 1, 0, "norm", true],
    ["f16", 2, 37, 0, "plain", true],
    ["bf16", 1, 2111, 1024, "norm", true],
    ["bf16", 2, 1501, 512, "plain", true],
  ] as const)(
    "linear %s, %i rows, inner=%i k=%i (0: random), input %s, bias %s, SwiGLU output: float64, and the bits of product then swiGlu",
    (dtype, m, inner0, k0, input, bias) => {
      const inner = inner0 || rng.int(1, 300);
      const k = k0 || 8 * rng.int(1, 700);
      const call = randomLinear(scope, rng, {
        m,
        n: 2 * inner,
        k,
        input,
        accumulate: false,
        dtype,
        weightType: dtype,
        device: "cuda:0",
        swiGluOutput: true,
        bias,
      });
      const ulp = dtype === "bf16" ? 2 ** -8 : 2 ** -11;
      const strict = call.reference(ulp),
        library = call.reference(ulp, true);
      const gemv = m <= 4 && k % 8 === 0;
      const check = (gemm: kernels.GemmChoice) => {
        const out = scope.add(Tensor.empty([m, inner], dtype, "cuda:0"));
        call.run(out, gemm);
        const got = out.toFloat32Array();
        const { want, bound, scale } = gemm === "gemv-only" || (gemm === "gemv" && gemv) ? strict : library;
        const rms = errorToScale(got, want, scale) < 2 * ulp;
        const fused = bits(out),
          separate = bits(scope.add(kernels.swiGlu({ x: scope.add(call.product(gemm)) })));
        const differing = fused.filter((v, i) => v !== separate[i]).length;
        return { gemm, seed: rng.seed, m, inner, k, worst: worstBeyondBound(got, want, bound), rms, differing };
      };
      for (const gemm of gemv ? (["gemv-only", "gemv", "cublasLt", "auto"] as const) : (["gemv", "cublasLt", "auto"] as const))
        expect(check(gemm)).toEqual({ gemm, seed: rng.seed, m, inner, k, worst: "none", rms: true, differing: 0 });
      if (!gemv) expect(() => check("gemv-only")).toThrow(/gemv-only was asked for but the small-batch GEMV does not take this call/);
    },
  );
  // Gates from -100 to -78, where 1/(1 + e^-g) reaches f32's subnormals (which the CUDA build
  // flushes) while silu(g) · up is still a normal bf16 down to g ≈ -92: swiGlu, and the GEMV's
  // SwiGLU output with a one-hot input row that picks each gate and up out of the weight's first
  // column, against float64. Below f32's smallest normal, silu and the product may flush to 0.
  test("SwiGLU of large negative gates, in swiGlu and in the GEMV's SwiGLU output: float64", () => {
    const { inner, ups, want, outputs } = negativeGateSwiGlu(scope, rng, "bf16", "cuda:0", "gemv-only");
    const bound = want.map((v, j) => (2 ** -8 + 2 ** -16) * Math.abs(v) + 2 ** -126 * (1 + Math.abs(ups[j])) + 2 ** -134);
    for (const out of outputs()) expect(worstBeyondBound(out.toFloat32Array(), want, bound)).toBe("none");
    expect(want.filter((v) => Math.abs(v) > 2 ** -126).length).toBeGreaterThan(inner / 4);
  });
  // The layer's chain (norm → gate|up with its SwiGLU, → down added into h, norm → a square projection
  // added into h) at decode's row counts, with the GEMV asked for: each GEMV then follows a kernel
  // that wrote its input, launched as its programmatic dependent on sm_90. Eager on CUDA against the CPU run in bf16
  // (the same rounding points), and replayed from a CUDA graph against eager (the same kernels:
  // bit for bit where every product is a GEMV; cuBLAS without a workspace in the graph may sum in
  // another order).
  test.each([1, 2, 3, 4, 6])("a chain of fused linears over %i rows: eager equals the CPU, the graph equals eager", (m) => {
    const hidden = 8 * rng.int(8, 48),
      inner = 8 * rng.int(8, 48),
      eps = 1e-5;
    const weights = {
      norm: pair([hidden], "bf16"),
      gateUp: pair([2 * inner, hidden], "bf16"),
      down: pair([hidden, inner], "bf16"),
      square: pair([hidden, hidden], "bf16"),
    };
    const start = scope.random(rng, [m, hidden], "bf16").tensor;
    const chain = (h: Tensor, on: "cpu" | "gpu", scratch: { act: Tensor; a: Tensor }, constantWeight = false) => {
      // The products of 1-4 rows must run on the GEMV (gemv-only refuses the library), so the
      // graph's kernels are the eager ones.
      const gemm = m <= 4 ? "gemv-only" : "gemv";
      for (let round = 0; round < 3; round++) {
        kernels.linear({
          x: h,
          norm: { weight: weights.norm[on], eps },
          weight: weights.gateUp[on],
          out: scratch.act,
          swiGluOutput: true,
          gemm,
          constantWeight,
        });
        kernels.linear({ x: scratch.act, weight: weights.down[on], out: h, accumulate: true, gemm, constantWeight });
        kernels.linear({
          x: h,
          norm: { weight: weights.norm[on], eps },
          weight: weights.square[on],
          out: scratch.a,
          gemm,
          constantWeight,
        });
        kernels.linear({ x: scratch.a, weight: weights.square[on], out: h, accumulate: true, gemm, constantWeight });
      }
    };
    const buffers = (device: DeviceName) => ({
      h: scope.add(start.to(device)),
      act: scope.add(Tensor.empty([m, inner], "bf16", device)),
      a: scope.add(Tensor.empty([m, hidden], "bf16", device)),
    });
    const cpu = buffers("cpu"),
      eager = buffers("cuda:0"),
      replayed = buffers("cuda:0"),
      constant = buffers("cuda:0"),
      constantReplayed = buffers("cuda:0");
    chain(cpu.h, "cpu", cpu);
    const input = scope.add(Tensor.empty([1], "i32", "cuda:0"));
    chain(eager.h, "gpu", eager);
    // With constantWeight the GEMV reads its first weights before the kernel ahead finishes: the
    // same kernels and sums, so the same bits.
    chain(constant.h, "gpu", constant, true);
    for (const [target, constantWeight] of [
      [replayed, false],
      [constantReplayed, true],
    ] as const) {
      const graph = CudaGraph.capture(input, () => chain(target.h, "gpu", target, constantWeight));
      try {
        graph.launch(new Int32Array(1));
      } finally {
        graph.dispose();
      }
    }
    const want = cpu.h.toFloat32Array(),
      got = eager.h.toFloat32Array();
    expect({ seed: rng.seed, m, fromCpu: relError(got, want) < 2e-2 }).toEqual({ seed: rng.seed, m, fromCpu: true });
    for (const other of [replayed, constant, constantReplayed]) {
      const again = other.h.toFloat32Array();
      if (m <= 4) expect({ seed: rng.seed, m, same: Array.from(again) }).toEqual({ seed: rng.seed, m, same: Array.from(got) });
      else expect({ seed: rng.seed, m, fromEager: relError(again, got) < 2e-2 }).toEqual({ seed: rng.seed, m, fromEager: true });
    }
  });

  // Without constantWeight the GEMV reads its weight only after the kernel ahead of it has
  // finished. Here that kernel writes the weight: swiGlu, which lets its dependents launch at its
  // start, so a weight read any earlier would be the previous round's (or the empty tensor's).
  test.each([1, 2, 4])("a weight written by the kernel just before the GEMV is read after it (%i rows)", (m) => {
    const n = 8 * rng.int(64, 512),
      k = 8 * rng.int(64, 512);
    const x = pair([m, k], "bf16");
    const w = emptyPair([n, k], "bf16"),
      y = emptyPair([m, n], "bf16");
    for (let round = 0; round < 3; round++) {
      const source = pair([n, 2 * k], "bf16");
      for (const on of ["cpu", "gpu"] as const) {
        kernels.swiGlu({ x: source[on], out: w[on] });
        kernels.linear({ x: x[on], weight: w[on], out: y[on], gemm: on === "gpu" ? "gemv-only" : undefined });
      }
      const got = y.gpu.toFloat32Array(),
        want = y.cpu.toFloat32Array();
      expect({ seed: rng.seed, m, round, close: relError(got, want) < 2e-2 }).toEqual({ seed: rng.seed, m, round, close: true });
    }
  });

  // constantWeight at a decode step's sizes: rows of several 256-chunk steps (the first group's
  // first steps are loaded before the wait; k = 2056 leaves its second step one chunk), more row
  // groups than the grid has blocks, after a kernel that lets the GEMV launch at its start and
  // writes its x. Every output form gives the bits of the same call without the option.
  test.each([
    [1, 2056],
    [1, 4096],
    [2, 3000],
  ])("constantWeight gives the GEMV's bits without it (%i rows, k=%i)", (m, k) => {
    const n = 8 * rng.int(513, 577),
      eps = 1e-5;
    const w = pair([n, k], "bf16").gpu,
      norm = pair([k], "bf16").gpu,
      source = pair([m, 2 * k], "bf16").gpu;
    const x = scope.add(Tensor.empty([m, k], "bf16", "cuda:0"));
    const forms = {
      plain: { n },
      norm: { n, norm: { weight: norm, eps } },
      accumulate: { n, accumulate: true },
      swiGluOutput: { n: n / 2, swiGluOutput: true },
    } as const;
    for (const [form, { n: outputs, ...options }] of Object.entries(forms)) {
      const start = scope.random(rng, [m, outputs], "bf16").tensor;
      const run = (constantWeight: boolean) => {
        const out = scope.add(start.to("cuda:0"));
        kernels.swiGlu({ x: source, out: x });
        kernels.linear({ x, weight: w, out, gemm: "gemv-only", constantWeight, ...options });
        return bits(out);
      };
      const without = run(false),
        withOption = run(true);
      expect({ seed: rng.seed, form, same: withOption.every((v, i) => v === without[i]) }).toEqual({
        seed: rng.seed,
        form,
        same: true,
      });
    }
  });

  test("on CUDA, out may not overlap x even for a plain product", () => {
    const buffer = scope.random(rng, [8, 64], "bf16", "cuda:0").tensor;
    const w = scope.random(rng, [64, 64], "bf16", "cuda:0").tensor;
    expect(() => kernels.linear({ x: scope.add(buffer.rows(0, 4)), weight: w, out: scope.add(buffer.rows(2, 4)) })).toThrow(
      /out overlaps x, which only a plain product on the CPU allows: give out a tensor of its own/,
    );
  });

  // auto sends a product of 1-2 rows to the GEMV (an RMSNorm input inside it, SwiGLU as its own
  // kernel first) and every other product to the library. Which one ran shows in the bits: the two paths sum in
  // different orders, so their outputs differ in some elements, and auto's equal one of them
  // exactly. Nothing guarantees a difference for given inputs, so up to five draws are made until
  // the paths differ (the number of differing elements is reported); none differing fails.
  test.each([
    ["norm", 1, 6144, 4096, "gemv-only"],
    ["norm", 2, 1024, 4096, "gemv-only"],
    ["norm", 3, 1024, 4096, "cublasLt"],
    ["norm", 1, 16384, 1024, "gemv-only"],
    ["plain", 1, 4096, 4096, "gemv-only"],
    ["plain", 2, 4096, 4096, "gemv-only"],
    ["plain", 3, 4096, 4096, "cublasLt"],
    ["swiGlu", 1, 4096, 1024, "gemv-only"],
    ["swiGlu", 4, 4096, 1024, "cublasLt"],
  ] as const)("auto: input %s, %i rows, n=%i k=%i runs as %s does", (input, m, n, k, twin) => {
    const differing = (a: Uint16Array | Uint32Array, b: Uint16Array | Uint32Array) => a.filter((v, i) => v !== b[i]).length;
    let draws = 0,
      result = { pathsDiffer: 0, ranAs: "no draw told the paths apart" };
    while (draws < 5 && result.pathsDiffer === 0) {
      draws++;
      const call = randomLinear(scope, rng, {
        m,
        n,
        k,
        input,
        accumulate: rng.next() < 0.5,
        dtype: "bf16",
        weightType: "bf16",
        device: "cuda:0",
      });
      const [gemv, library, auto] = (["gemv-only", "cublasLt", "auto"] as const).map((gemm) => {
        const out = scope.add(Tensor.empty([m, n], "bf16", "cuda:0"));
        out.copyFrom(call.before.tensor);
        call.run(out, gemm);
        return bits(out);
      });
      const pathsDiffer = differing(gemv, library);
      if (pathsDiffer === 0) continue;
      const ranAs = differing(auto, gemv) === 0 ? "gemv-only" : differing(auto, library) === 0 ? "cublasLt" : "neither";
      result = { pathsDiffer, ranAs };
    }
    process.stderr.write(
      `auto ${input} ${m}x${n}x${k}: ${result.pathsDiffer} of ${m * n} elements differ between the paths (draw ${draws})\n`,
    );
    expect({ seed: rng.seed, ranAs: result.ranAs }).toEqual({ seed: rng.seed, ranAs: twin });
  });

  test("the GEMM backend is reported; the small-batch GEMV runs where asked for or where auto picks it", () => {
    expect(kernels.gemmBackend("auto")?.name).toMatch(/cublasLt|cublas|fallback/);
    // Without a choice the backend is LIGHTTRANSFER_GEMM's, so that case holds only where the
    // variable is unset.
    const unset = !process.env.LIGHTTRANSFER_GEMM;
    if (!unset) process.stderr.write("gemmBackend() without a choice not checked: LIGHTTRANSFER_GEMM is set\n");
    for (const gemm of unset ? ([undefined, "auto"] as const) : (["auto"] as const))
      expect(kernels.gemmBackend(gemm)?.detail).toMatch(/; products of 1-2 rows on the small-batch GEMV/);
    expect(kernels.gemmBackend("cublasLt")?.detail).not.toMatch(/GEMV/);
    expect(kernels.gemmBackend("gemv")?.detail).toMatch(/1 to 4 rows on the small-batch GEMV/);
    expect(kernels.gemmBackend("gemv-only")?.name).toBe("gemv");
    expect(() => kernels.gemmBackend("gemv2" as kernels.GemmChoice)).toThrow(/gemm must be one of auto, cublasLt, gemv/);
  });
});

describe.each(fixtureModels)("%s on CUDA matches transformers", (name) => {
  if (!status.available) {
    test.skip("skipped: no CUDA", () => undefined);
    return;
  }
  const ref = readReference(name);
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(path.join(fixtureRoot, name), { device: "cuda:0", kvCacheBytes: 16 * 2 ** 20 });
  });
  afterAll(async () => model?.dispose());

  // Activations and weights in bf16 (8 significant bits) through a few layers: each op rounds
  // to ~2e-3, compounding to a few 1e-2 of the logits; f16 is ~8x tighter.
  const bound = () => (model.dtype === "f16" ? 1e-2 : 5e-2);

  test.each(ref.cases.map((_, i) => [i] as const))("logits at every position, case %i, whole and chunked", (i) => {
    const c = ref.cases[i];
    const want = readLogits(name, c);
    for (const chunkSize of [1024, 7]) {
      const seq = model.decoder.createSequence();
      try {
        const got = model.decoder.prefill(seq, c.ids, { allLogits: true, chunkSize });
        const err = relError(got, want);
        if (!(err < bound())) throw new Error(`chunk ${chunkSize}: relative logit error ${err} (bound ${bound()}, ${model.dtype})`);
      } finally {
        seq.dispose();
      }
    }
  });

  test("prefill with targets scores on the device what the rows of allLogits give", () => {
    const c = ref.cases[1];
    const vocab = model.config.vocabSize;
    const targets = c.ids.slice(1);
    const run = (options: { allLogits?: boolean; targets?: number[] }) => {
      const seq = model.decoder.createSequence();
      try {
        return model.decoder.prefill(seq, c.ids, options);
      } finally {
        seq.dispose();
      }
    };
    const all = run({ allLogits: true }),
      got = run({ targets });
    targets.forEach((t, i) => {
      const row = all.subarray(i * vocab, (i + 1) * vocab);
      const max = row.reduce((m, x) => Math.max(m, x), -Infinity);
      const want = row[t] - max - Math.log(row.reduce((a, x) => a + Math.exp(x - max), 0));
      // The same logits on both sides (bf16 rows read back as f32); only f32 against f64 summation differs.
      if (!(Math.abs(got[i] - want) <= 1e-4 * Math.max(1, Math.abs(want)))) throw new Error(`token ${i}: ${got[i]} vs ${want}`);
    });
  });

  test("teacher-forced greedy: every step whose margin exceeds our error picks transformers' token", () => {
    let checked = 0;
    for (const c of ref.cases.slice(0, -1)) {
      const seq = model.decoder.createSequence();
      try {
        // Our logit error on this prompt, measured; a step whose top-2 margin is under twice it
        // may legitimately flip (bf16 weights, or f32 weights rounded to bf16 on the GPU).
        const all = model.decoder.prefill(seq, c.ids, { allLogits: true });
        const want = readLogits(name, c);
        let err = 0;
        for (let j = 0; j < want.length; j++) err = Math.max(err, Math.abs(all[j] - want[j]));
        const vocab = model.config.vocabSize;
        let logits = all.subarray(all.length - vocab);
        for (let s = 0; s < c.greedy.length; s++) {
          if (c.greedyMargins[s] > 2 * err) {
            let best = 0;
            for (let j = 1; j < vocab; j++) if (logits[j] > logits[best]) best = j;
            expect(best).toBe(c.greedy[s]);
            checked++;
          }
          logits = model.decoder.step([seq], [c.greedy[s]], "logits");
        }
      } finally {
        seq.dispose();
      }
    }
    process.stderr.write(`${name} on CUDA: ${checked} greedy steps had a margin above twice the measured logit error\n`);
  });
});

describeGpu("models on CUDA: memory", () => {
  const dir = path.join(fixtureRoot, "llama-tiny");
  test("dispose() gives back the weights and the KV pool", async () => {
    await collectGarbage();
    const before = memoryUsage().cuda;
    const model = await loadModel(dir, { device: "cuda:0", kvCacheBytes: 64 * 2 ** 20 });
    expect(memoryUsage().cuda - before).toBeGreaterThanOrEqual(64 * 2 ** 20 - model.pool.pageBytes);
    await model.dispose();
    expect(memoryUsage().cuda).toBe(before);
  });
});

describeGpu("models on CUDA: head dimensions", () => {
  test("a head dimension the CUDA attention kernels do not take is refused at load, before the weights", async () => {
    const dir = copyFixture("llama-tiny");
    // The fixture's weights are for 64: the config is read, and refused, before them.
    editJson(dir, "config.json", (c) => ({ ...c, head_dim: 96 }));
    const before = memoryUsage().cuda;
    const refused = loadModel(dir, { device: "cuda:0" });
    await expect(refused).rejects.toMatchObject({ name: "ConfigError" });
    await expect(refused).rejects.toThrow(
      /config\.json: the head dimension is 96, and the CUDA attention kernels take 64 or 128; load this model with device "cpu"/,
    );
    expect(memoryUsage().cuda).toBe(before);
  });
});

describeGpu("a Llama with attention_bias on CUDA", () => {
  // The fixtures have no projection biases; this one has random q|k|v and o biases, large enough
  // that dropping one would show far beyond bf16's error.
  const made: string[] = [];
  afterAll(() => {
    for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
  });
  function llamaWithBiases(biasScale: number): string {
    const config = JSON.parse(fs.readFileSync(path.join(fixtureRoot, "llama-tiny", "config.json"), "utf8"));
    const tensors = fixtureTensors("llama-tiny");
    const qSize = config.num_attention_heads * config.head_dim,
      kvSize = config.num_key_value_heads * config.head_dim;
    for (let l = 0; l < config.num_hidden_layers; l++) {
      const p = `model.layers.${l}.self_attn.`;
      for (const [name, n] of [
        ["q_proj", qSize],
        ["k_proj", kvSize],
        ["v_proj", kvSize],
        ["o_proj", config.hidden_size],
      ] as const)
        tensors.set(`${p}${name}.bias`, storedF32(rng.normals(n, biasScale), [n]));
    }
    const dir = fixtureWithTensors("llama-tiny", tensors);
    made.push(dir);
    editJson(dir, "config.json", (j) => ({ ...j, attention_bias: true }));
    return dir;
  }

  test("prefill and decode steps give the CPU's logits, which the biases move far beyond the bound", async () => {
    const dir = llamaWithBiases(0.5);
    const vocab = 384;
    const ids = Array.from({ length: rng.int(20, 80) }, () => rng.int(2, vocab - 1));
    const steps = Array.from({ length: 6 }, () => rng.int(2, vocab - 1));
    // Every row of a prompt's logits, then each decode step's row (a replayed graph on CUDA).
    const run = async (modelDir: string, device: DeviceName) => {
      const model = await loadModel(modelDir, { device, dtype: "bf16", kvCacheBytes: 2 ** 22, tokenizer: false });
      const seq = model.decoder.createSequence();
      try {
        const rows = [model.decoder.prefill(seq, ids, { allLogits: true })];
        for (const id of steps) rows.push(Float32Array.from(model.decoder.step([seq], [id], "logits")));
        return rows;
      } finally {
        seq.dispose();
        await model.dispose();
      }
    };
    const [cpu, cuda, unbiased] = [await run(dir, "cpu"), await run(dir, "cuda:0"), await run(path.join(fixtureRoot, "llama-tiny"), "cpu")];
    // bf16 activations through three layers (as against transformers above).
    const bound = 5e-2;
    const errors = cpu.map((want, i) => relError(cuda[i], want));
    expect({ seed: rng.seed, beyond: errors.filter((e) => !(e < bound)) }).toEqual({ seed: rng.seed, beyond: [] });
    expect(relError(unbiased[0], cpu[0])).toBeGreaterThan(4 * bound);
  });
});

describeGpu("sampled generation on CUDA", () => {
  test("plain temperature from the device's candidates picks what next() picks from whole rows, seed for seed", async () => {
    // One order of draw on both paths: a request preempted and prefilled again (next() on the
    // prompt's logits) goes on as it would have.
    const model = await loadModel(path.join(fixtureRoot, "llama-tiny"), { device: "cuda:0", kvCacheBytes: 16 * 2 ** 20 });
    const prompts = readReference("llama-tiny")
      .cases.slice(0, 3)
      .map((c) => c.ids);
    const viaRows = prefilledSequences(model.decoder, prompts),
      viaCandidates = prefilledSequences(model.decoder, prompts);
    try {
      const vocab = model.config.vocabSize;
      // No repetition penalty: the device applies it to logits in the model's dtype (bf16 here), the
      // whole-row path in f32, so the penalised rows differ by a rounding.
      for (const options of [{ temperature: 0.7 + rng.next() }, { temperature: 0.3 + 2 * rng.next() }]) {
        const seed = rng.int(0, 2 ** 31);
        const a = prompts.map((_, b) => new Sampler({ ...options, seed: seed + b }));
        const c = prompts.map((_, b) => new Sampler({ ...options, seed: seed + b }));
        let ids = prompts.map((p) => p[p.length - 1]);
        const seen = prompts.map((p) => [...p]);
        for (let step = 0; step < 6; step++) {
          const logits = model.decoder.step(viaRows, ids, "logits");
          const want = a.map((sampler, b) => sampler.next(logits.subarray(b * vocab, (b + 1) * vocab), seen[b]));
          expect({ options, step, tokens: sampleOnDevice(model.decoder, viaCandidates, ids, c, seen) }).toEqual({
            options,
            step,
            tokens: want,
          });
          want.forEach((t, b) => seen[b].push(t));
          ids = want;
        }
      }
    } finally {
      for (const seq of [...viaRows, ...viaCandidates]) seq.dispose();
      await model.dispose();
    }
  });

  test("top-p, top-k and a repetition penalty sample from the device's candidates, reproducibly with a seed", async () => {
    const model = await loadModel(path.join(fixtureRoot, "llama-tiny"), { device: "cuda:0", kvCacheBytes: 16 * 2 ** 20 });
    try {
      const prompts = ["The quick brown fox", "Once upon a time", "Paged attention is"];
      const options = {
        maxNewTokens: 24,
        stopAtEos: false,
        temperature: 0.9,
        topK: 40,
        topP: 0.9,
        repetitionPenalty: 1.3,
        seed: rng.int(0, 2 ** 31),
      };
      const first = await model.generateBatch(prompts, options);
      const again = await model.generateBatch(prompts, options);
      expect(again.map((r) => r.tokens)).toEqual(first.map((r) => r.tokens));
      for (const r of first) {
        expect(r.tokens).toHaveLength(24);
        for (const t of r.tokens) expect(t >= 0 && t < model.config.vocabSize).toBe(true);
      }
    } finally {
      await model.dispose();
    }
  });
});
