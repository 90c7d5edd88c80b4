// `npm run bench:kernels`: time and GFLOP/s (or GB/s for byte movers) of each kernel at several
// sizes, on the CPU by default; `-- --device cuda:0` runs the same table on a GPU, and
// `-- --only linear,decode` only those sections (prefill, decode, cache, lazy-ratio, linear).
import { type DeviceName, devices, getThreads, kernels, Tensor } from "../lib";
import { CudaGraph } from "../lib/runtime/cuda-graph";
import { readArgs } from "./args";
import { deviceFence, medianMs, printTable, randomNormals, shuffledIndices } from "./timing";

const sections = ["prefill", "decode", "cache", "lazy-ratio", "linear"];
const args = readArgs("npm run bench:kernels -- [--device cpu|cuda:N] [--only prefill,decode,cache,lazy-ratio,linear]", {
  device: "cpu",
  only: sections.join(","),
});
const device = args.text("device") as DeviceName;
const only = args.text("only").split(",");
for (const name of only) if (!sections.includes(name)) throw new Error(`--only takes ${sections.join(", ")}; got ${name}`);
const runs = (section: string) => only.includes(section);
const dtype = device === "cpu" ? "f32" : "bf16";
const onGpu = device !== "cpu";
const hopper = devices().some((d) => d.id === device && d.type === "cuda" && d.computeCapability === "9.0");

function rand(shape: number[], dt: "f32" | "bf16" = dtype): Tensor {
  return Tensor.from(randomNormals(shape.reduce((a, b) => a * b, 1)), shape, { dtype: dt, device });
}

// Each timed call waits for the device (a 4-byte read, a few µs beside the kernels timed here).
const fence = deviceFence(device);
const timed = (run: () => void) =>
  medianMs(() => {
    run();
    fence();
  });

const rows: Array<Record<string, string | number>> = [];
const hq = 32,
  hkv = 8,
  d = 128;
const pageSize = 16;

// Prefill: causal, streaming (S=4, W=1020) and causal with the fused lazy ratio.
const prefillSizes = onGpu ? [1024, 4096, 16384] : [256, 1024, 2048];
for (const n of runs("prefill") ? prefillSizes : []) {
  const q = rand([n, hq, d]),
    k = rand([n, hkv, d]),
    v = rand([n, hkv, d]);
  const out = Tensor.empty([n, hq, d], q.dtype, device);
  const ratio = Tensor.empty([hq], "f32", device);
  const causalPairs = (n * (n + 1)) / 2;
  const sink = 4,
    window = 1020;
  let streamingPairs = 0;
  for (let p = 0; p < n; p++) streamingPairs += Math.min(p + 1, sink + window);
  const variants: Array<[string, number, () => void]> = [
    ["causal", causalPairs, () => kernels.prefillAttention({ q, k, v, out })],
    ["streaming S=4 W=1020", streamingPairs, () => kernels.prefillAttention({ q, k, v, out, streaming: { sink, window } })],
    ["causal + lazy ratio", causalPairs, () => kernels.prefillAttention({ q, k, v, out, lazyRatio: true, lazyRatioOut: ratio })],
  ];
  // On an H100/H200 the default is the wgmma kernel; the mma.sync one is timed beside it.
  if (hopper) variants.push(["causal (mmaSync)", causalPairs, () => kernels.prefillAttention({ q, k, v, out, kernel: "mmaSync" })]);
  for (const [name, pairs, run] of variants) {
    const ms = timed(run);
    rows.push({ kernel: `prefill ${name}`, size: `N=${n}`, ms, "GFLOP/s": (4 * pairs * d * hq) / (ms * 1e6), "GB/s": "" });
  }
  [q, k, v, out, ratio].forEach((t) => t.dispose());
}

// A later prefill chunk: the second half of N queries over the first half read from the page
// pool (as the model runs a chunk after the first), beside the same keys in one contiguous
// tensor. The work is the same, so the ratio is what reading through the page table costs.
const prefixSizes = onGpu ? [4096, 16384, 32768] : [1024, 2048];
for (const n of runs("prefill") ? prefixSizes : []) {
  const half = n / 2;
  const pages = half / pageSize;
  const q = rand([half, hq, d]),
    kPages = rand([pages, pageSize, hkv, d]),
    vPages = rand([pages, pageSize, hkv, d]),
    k = rand([n, hkv, d]),
    v = rand([n, hkv, d]);
  // The prefix in pages of a shuffled order, and the same keys and values in slot order in the
  // first half of k and v.
  const order = shuffledIndices(pages);
  order.forEach((page, slot) => {
    for (const [contiguous, paged] of [
      [k, kPages],
      [v, vPages],
    ]) {
      const to = contiguous.rows(slot * pageSize, pageSize);
      const from = paged.rows(page, 1);
      to.copyFrom(from);
      to.dispose();
      from.dispose();
    }
  });
  const ownK = k.rows(half, half),
    ownV = v.rows(half, half);
  const pageTable = Tensor.from(Int32Array.from(order), [pages], { device });
  const cached = { kPages, vPages, pageTable, length: half };
  const out = Tensor.empty([half, hq, d], q.dtype, device);
  const pairs = half * half + (half * (half + 1)) / 2;
  const variants: Array<[string, () => void]> = [
    ["2nd half, contiguous K/V", () => kernels.prefillAttention({ q, k, v, out })],
    ["2nd half, 1st half paged", () => kernels.prefillAttention({ q, k: ownK, v: ownV, cached, out })],
  ];
  for (const [name, run] of variants) {
    const ms = timed(run);
    rows.push({ kernel: `prefill ${name}`, size: `N=${n}`, ms, "GFLOP/s": (4 * pairs * d * hq) / (ms * 1e6), "GB/s": "" });
  }
  [q, kPages, vPages, k, v, ownK, ownV, pageTable, out].forEach((t) => t.dispose());
}

// Decode over paged K/V: batch × context; bytes are the K/V read.
const decodeSizes = onGpu
  ? [
      [1, 4096],
      [8, 16384],
      [32, 32768],
    ]
  : [
      [1, 1024],
      [4, 4096],
      [16, 4096],
    ];
for (const [batch, ctx] of runs("decode") ? decodeSizes : []) {
  const pagesPer = Math.ceil(ctx / pageSize);
  const numPages = batch * pagesPer;
  const kPages = rand([numPages, pageSize, hkv, d]),
    vPages = rand([numPages, pageSize, hkv, d]);
  const table = Int32Array.from({ length: numPages }, (_, i) => i);
  const pageTable = Tensor.from(table, [batch, pagesPer], { device });
  const seqLens = Tensor.from(new Int32Array(batch).fill(ctx), [batch], { device });
  const q = rand([batch, hq, d]);
  const out = Tensor.empty([batch, hq, d], q.dtype, device);
  const ms = timed(() => kernels.decodeAttention({ q, kPages, vPages, pageTable, seqLens, out }));
  const bytes = 2 * batch * ctx * hkv * d * (dtype === "f32" ? 4 : 2);
  rows.push({
    kernel: "decode (paged)",
    size: `B=${batch} ctx=${ctx}`,
    ms,
    "GFLOP/s": (4 * batch * ctx * hq * d) / (ms * 1e6),
    "GB/s": bytes / (ms * 1e6),
  });
  [kPages, vPages, pageTable, seqLens, q, out].forEach((t) => t.dispose());
}

// Cache ops: append a prompt's K/V, and cut it to the ring.
for (const n of runs("cache") ? (onGpu ? [4096, 32768] : [1024, 8192]) : []) {
  const numPages = Math.ceil(n / pageSize);
  const kPages = rand([numPages, pageSize, hkv, d]),
    vPages = rand([numPages, pageSize, hkv, d]);
  const k = rand([n, hkv, d]),
    v = rand([n, hkv, d]);
  const slots = Tensor.from(
    Int32Array.from({ length: n }, (_, i) => i),
    [n],
    { device },
  );
  const table = Tensor.from(
    Int32Array.from({ length: numPages }, (_, i) => i),
    [numPages],
    { device },
  );
  const rowBytes = hkv * d * (dtype === "f32" ? 4 : 2);
  const appendMs = timed(() => kernels.appendKv({ k, v, kPages, vPages, slots }));
  rows.push({ kernel: "appendKv", size: `N=${n}`, ms: appendMs, "GFLOP/s": "", "GB/s": (4 * n * rowBytes) / (appendMs * 1e6) });
  const cutMs = timed(() =>
    kernels.cutToStreaming({ kPages, vPages, srcPageTable: table, dstPageTable: table, length: n, sink: 4, window: 1020 }),
  );
  rows.push({
    kernel: "cutToStreaming S=4 W=1020",
    size: `N=${n}`,
    ms: cutMs,
    "GFLOP/s": "",
    "GB/s": (8 * 1024 * rowBytes) / (cutMs * 1e6),
  });
  [kPages, vPages, k, v, slots, table].forEach((t) => t.dispose());
}

// Standalone lazy ratio from the last 32 queries.
for (const n of runs("lazy-ratio") ? (onGpu ? [4096, 32768] : [1024, 8192]) : []) {
  const q = rand([32, hq, d]),
    k = rand([n, hkv, d]);
  const lse = Tensor.from(new Float32Array(32 * hq).fill(8), [32, hq], { device });
  const ms = timed(() => kernels.lazyRatio({ q, k, lse, sink: 4, window: 1020, lastQueries: 32 }).dispose());
  rows.push({ kernel: "lazyRatio (standalone)", size: `N=${n}`, ms, "GFLOP/s": (2 * 32 * 1024 * hq * d) / (ms * 1e6), "GB/s": "" });
  [q, k, lse].forEach((t) => t.dispose());
}

// Linear at decode's row counts over the 8B layer's projections (q|k|v, o, gate|up, down). The
// calls cycle through enough weight copies to spill the GPU's L2, as a decode step does, and on
// CUDA they are recorded into one CUDA graph and replayed, as a decode step is, so the time is
// the kernels' and not the launches'. On CUDA: the small-batch GEMV (gemm "gemv"), cuBLASLt
// (gemm "cublasLt") and the default's pick between them (gemm "auto").
const projections = onGpu
  ? [
      [6144, 4096],
      [4096, 4096],
      [28672, 4096],
      [4096, 14336],
    ]
  : [
      [1536, 1024],
      [1024, 1024],
      [7168, 1024],
      [1024, 3584],
    ];
// A graph's index tensors are views of its input: the RoPE calls' positions and slots, 4 each.
const graphInput = onGpu ? Tensor.empty([2, 4], "i32", device) : undefined;
/** Milliseconds per call of `calls`, which makes `count` calls; `data` fills the graph's input. */
function perCall(calls: () => void, count: number, data = new Int32Array(8)): number {
  if (!graphInput) return timed(calls) / count;
  const graph = CudaGraph.capture(graphInput, calls);
  try {
    return timed(() => graph.launch(data)) / count;
  } finally {
    graph.dispose();
  }
}
// Each projection as the layer runs it: q|k|v and gate|up after the RMSNorm, q|k|v with RoPE and
// the K/V append of its output (d 128, four query heads to a key head), gate|up with the SwiGLU
// of its output, o and down added into the residual (on the GEMV, the norm is fused at 1-2 rows,
// RoPE and SwiGLU in its epilogue); beside it the plain product. GB/s counts the weights only.
const layerForms: Array<{ form: string; norm?: boolean; rope?: boolean; swiGluOutput?: boolean; accumulate?: boolean }[]> = [
  [{ form: "plain" }, { form: "norm + ropeAppendKv", norm: true, rope: true }],
  [{ form: "plain" }, { form: "accumulate", accumulate: true }],
  [{ form: "plain" }, { form: "norm + swiGluOutput", norm: true, swiGluOutput: true }],
  [{ form: "plain" }, { form: "accumulate", accumulate: true }],
];
for (const m of runs("linear") ? [1, 4] : []) {
  projections.forEach(([n, k], p) => {
    const weightBytes = n * k * (dtype === "f32" ? 4 : 2);
    const copies = onGpu ? Math.max(4, Math.ceil(2 ** 30 / weightBytes)) : 1;
    // Random values once, copied on the device: drawing a GiB of normals on the host takes minutes.
    const first = rand([n, k]);
    const weights = [
      first,
      ...Array.from({ length: copies - 1 }, () => {
        const copy = Tensor.empty([n, k], first.dtype, device);
        copy.copyFrom(first);
        return copy;
      }),
    ];
    const normWeight = rand([k]);
    const x = rand([m, k]);
    const y = Tensor.empty([m, n], x.dtype, device),
      halfY = Tensor.empty([m, n / 2], x.dtype, device);
    // The q|k|v product's heads, as Llama-3-8B's (32 and 8 of 128 for n = 6144), and one page of
    // K/V for the m tokens.
    const ropeHeads = n / 128,
      ropeKv = Math.max(1, Math.floor(ropeHeads / 6)),
      ropeQ = ropeHeads - 2 * ropeKv;
    const ropeQOut = Tensor.empty([m, ropeQ, 128], x.dtype, device);
    const positionList = Int32Array.from({ length: m }, (_, t) => 4096 + t),
      slotList = Int32Array.from({ length: m }, (_, t) => t);
    const ropeIndices = new Int32Array(8);
    ropeIndices.set(positionList, 0);
    ropeIndices.set(slotList, 4);
    const ropeTarget = {
      kPages: Tensor.empty([1, pageSize, ropeKv, 128], x.dtype, device),
      vPages: Tensor.empty([1, pageSize, ropeKv, 128], x.dtype, device),
      positions: graphInput ? graphInput.rows(0, 1).reshape([4]).rows(0, m) : Tensor.from(positionList, [m], { device }),
      slots: graphInput ? graphInput.rows(1, 1).reshape([4]).rows(0, m) : Tensor.from(slotList, [m], { device }),
      invFreq: Tensor.from(
        Float32Array.from({ length: 64 }, (_, i) => 1 / 500000 ** (i / 64)),
        [64],
        { device },
      ),
    };
    for (const { form, norm, rope, swiGluOutput, accumulate } of layerForms[p])
      for (const gemm of onGpu ? (["gemv", "cublasLt", "auto"] as const) : (["auto"] as const)) {
        const ms = perCall(
          () => {
            for (const weight of weights)
              kernels.linear({
                x,
                weight,
                out: rope ? ropeQOut : swiGluOutput ? halfY : y,
                ...(norm && { norm: { weight: normWeight } }),
                ...(rope && { ropeAppendKv: ropeTarget }),
                ...(swiGluOutput && { swiGluOutput }),
                ...(accumulate && { accumulate }),
                gemm,
              });
          },
          copies,
          ropeIndices,
        );
        rows.push({
          kernel: `linear ${m} row${m > 1 ? "s" : ""}, ${form} (${gemm})`,
          size: `n=${n} k=${k}`,
          ms,
          "GFLOP/s": (2 * m * n * k) / (ms * 1e6),
          "GB/s": weightBytes / (ms * 1e6),
        });
      }
    [...weights, normWeight, x, y, halfY, ropeQOut, ...Object.values(ropeTarget)].forEach((t) => t.dispose());
  });
}
graphInput?.dispose();

console.log(`lighttransfer kernels on ${device} (${dtype}, hq=${hq}, hkv=${hkv}, d=${d}${onGpu ? "" : `, ${getThreads()} threads`})`);
printTable(rows);
