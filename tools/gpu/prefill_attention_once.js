// Causal bf16 prefill attention of one N-token sequence (hq 32, hkv 8, d 128) on CUDA, called
// CALLS times: the workload tools/gpu/profile_prefill_attention.sh hands to Nsight Compute (which
// profiles the last call). With `paged`, the second half of the queries attends over the first
// half read through a shuffled page table, as a later prefill chunk does.
//   node tools/gpu/prefill_attention_once.js N [contiguous|paged] [CALLS]
// Run from the repository root after `npm run build` (it loads dist/lib and dist/bench).
const { kernels, Tensor } = require("../../dist/lib");
const { randomNormals, shuffledIndices } = require("../../dist/bench/timing");

const [nArg = "8192", layout = "contiguous", callsArg = "2"] = process.argv.slice(2);
const n = Number(nArg);
const hq = 32,
  hkv = 8,
  d = 128,
  pageSize = 16;
const device = "cuda:0";
if (!Number.isInteger(n) || n < 256 || n % (2 * pageSize) !== 0)
  throw new Error(`N must be a multiple of ${2 * pageSize}, at least 256; got ${nArg}`);
if (layout !== "contiguous" && layout !== "paged") throw new Error(`layout must be contiguous or paged; got ${layout}`);
const calls = Number(callsArg);
if (!Number.isInteger(calls) || calls < 1) throw new Error(`CALLS must be a positive integer; got ${callsArg}`);

// Fresh normals on every run.
const rand = (shape) => Tensor.from(randomNormals(shape.reduce((a, b) => a * b, 1)), shape, { dtype: "bf16", device });

const owned = [];
const keep = (t) => {
  owned.push(t);
  return t;
};
let call;
if (layout === "contiguous") {
  const q = keep(rand([n, hq, d])),
    k = keep(rand([n, hkv, d])),
    v = keep(rand([n, hkv, d])),
    out = keep(Tensor.empty([n, hq, d], "bf16", device));
  call = () => kernels.prefillAttention({ q, k, v, out });
} else {
  const half = n / 2,
    pages = half / pageSize;
  const order = shuffledIndices(pages);
  const q = keep(rand([half, hq, d])),
    k = keep(rand([half, hkv, d])),
    v = keep(rand([half, hkv, d])),
    kPages = keep(rand([pages, pageSize, hkv, d])),
    vPages = keep(rand([pages, pageSize, hkv, d])),
    pageTable = keep(Tensor.from(Int32Array.from(order), [pages], { device })),
    out = keep(Tensor.empty([half, hq, d], "bf16", device));
  call = () => kernels.prefillAttention({ q, k, v, cached: { kPages, vPages, pageTable, length: half }, out });
}
for (let i = 0; i < calls; i++) call();
const probe = owned[owned.length - 1].toFloat32Array();
console.log(`prefill attention N=${n} ${layout}: ${calls} calls, out[0] ${probe[0].toFixed(4)}`);
for (const t of owned) t.dispose();
