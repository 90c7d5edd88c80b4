// `npm run demo`: the LightTransfer kernels on a synthetic 8-layer sample. Each layer's queries
// and keys are built to mix three attention habits — sinks (the first tokens), locality (the
// recent window) and content retrieval (anywhere) — in different amounts. The demo measures each
// layer's lazy ratio with the fused prefill kernel, picks the lazy half as DESIGN.md section 2
// does, and prints the KV memory and kernel timings that choice buys.
import * as path from "node:path";
import { cudaStatus, type DeviceName, kernels, loadModel, Tensor } from "../lib";
import { deviceFence, medianMs, printTable, randomNormals } from "./timing";

const device: DeviceName = cudaStatus().available ? "cuda:0" : "cpu";
const dtype = device === "cpu" ? "f32" : "bf16";
const n = device === "cpu" ? 2048 : 16384;
const hq = 8,
  hkv = 2,
  d = 64,
  sink = 4,
  window = 256,
  lastQueries = 32;
const layers = [
  { sinks: 3.0, local: 2.0, content: 0.2 },
  { sinks: 0.2, local: 0.3, content: 1.5 },
  { sinks: 2.5, local: 0.5, content: 0.5 },
  { sinks: 0.5, local: 2.5, content: 0.3 },
  { sinks: 0.1, local: 0.1, content: 2.0 },
  { sinks: 1.5, local: 1.5, content: 1.0 },
  { sinks: 0.3, local: 1.0, content: 1.2 },
  { sinks: 2.0, local: 2.0, content: 0.1 },
];

// Rotating frequencies make q_p·k_j depend on p - j (as RoPE does), so `local` favours recent keys;
// the frequencies are spread geometrically so no far distance lines them all up again.
const frequencies = [0.9, 0.5, 0.3, 0.17, 0.09, 0.05, 0.025, 0.012];
function layerInputs(mix: { sinks: number; local: number; content: number }) {
  const q = randomNormals(n * hq * d),
    k = randomNormals(n * hkv * d);
  for (let i = 0; i < q.length; i++) q[i] *= mix.content;
  for (let i = 0; i < k.length; i++) k[i] *= mix.content;
  for (let t = 0; t < n; t++) {
    for (let h = 0; h < hq; h++) {
      const row = (t * hq + h) * d;
      q[row] += 3 * mix.sinks;
      for (let f = 0; f < 8; f++) {
        const angle = t * frequencies[f];
        q[row + 2 + 2 * f] += 3 * mix.local * Math.cos(angle);
        q[row + 3 + 2 * f] += 3 * mix.local * Math.sin(angle);
      }
    }
    for (let h = 0; h < hkv; h++) {
      const row = (t * hkv + h) * d;
      if (t < sink) k[row] += 3 * mix.sinks;
      for (let f = 0; f < 8; f++) {
        const angle = t * frequencies[f];
        k[row + 2 + 2 * f] += 3 * mix.local * Math.cos(angle);
        k[row + 3 + 2 * f] += 3 * mix.local * Math.sin(angle);
      }
    }
  }
  return {
    q: Tensor.from(q, [n, hq, d], { dtype, device }),
    k: Tensor.from(k, [n, hkv, d], { dtype, device }),
    v: Tensor.from(randomNormals(n * hkv * d), [n, hkv, d], { dtype, device }),
  };
}

const fence = deviceFence(device);
const timed = (run: () => void) =>
  medianMs(
    () => {
      run();
      return fence();
    },
    { minReps: 1, minMs: 0 },
  );
const rows: Array<Record<string, string | number>> = [];
const ratios: number[] = [];
let plainMs = 0,
  fusedMs = 0,
  streamingMs = 0;
for (const [i, mix] of layers.entries()) {
  const { q, k, v } = layerInputs(mix);
  const out = Tensor.empty([n, hq, d], dtype, device);
  const ratioOut = Tensor.empty([hq], "f32", device);
  const spec = { sink, window, lastQueries };
  const plain = timed(() => kernels.prefillAttention({ q, k, v, out }));
  const fused = timed(() => kernels.prefillAttention({ q, k, v, out, lazyRatio: spec, lazyRatioOut: ratioOut }));
  const streaming = timed(() => kernels.prefillAttention({ q, k, v, out, streaming: { sink, window } }));
  plainMs += plain;
  fusedMs += fused;
  streamingMs += streaming;
  const perHead = Array.from(ratioOut.toFloat32Array());
  const ratio = perHead.reduce((a, b) => a + b, 0) / hq;
  ratios.push(ratio);
  rows.push({
    layer: i,
    "lazy ratio": ratio.toFixed(3),
    "min head": Math.min(...perHead).toFixed(3),
    "max head": Math.max(...perHead).toFixed(3),
    "prefill ms": plain,
    "fused ms": fused,
  });
  [q, k, v, out, ratioOut].forEach((t) => t.dispose());
}

// The P = L/2 layers with the lowest ratios stay full; the rest are lazy (ties by layer index).
const fullLayers = layers.length / 2;
const order = ratios.map((_r, i) => i).sort((a, b) => ratios[b] - ratios[a] || a - b);
const lazy = new Set(order.slice(0, layers.length - fullLayers));
rows.forEach((r, i) => (r.mode = lazy.has(i) ? "lazy (streaming)" : "full"));

console.log(`lighttransfer demo on ${device}: ${layers.length} synthetic layers, N=${n}, hq=${hq}, hkv=${hkv}, d=${d}, ${dtype}`);
console.log(`sink=${sink}, window=${window}, lastQueries=${lastQueries}\n`);
printTable(rows);

const bytesPerToken = 2 * hkv * d * (dtype === "f32" ? 4 : 2);
const fullKv = layers.length * n * bytesPerToken;
const hybridKv = (fullLayers * n + (layers.length - fullLayers) * Math.min(n, sink + window)) * bytesPerToken;
console.log(`\nlazy layers: ${[...lazy].sort((a, b) => a - b).join(", ")}`);
console.log(
  `KV cache: full ${(fullKv / 2 ** 20).toFixed(1)} MiB, hybrid ${(hybridKv / 2 ** 20).toFixed(1)} MiB (${((100 * hybridKv) / fullKv).toFixed(1)}%)`,
);
console.log(
  `prefill, all layers: plain ${plainMs.toFixed(1)} ms, with fused lazy ratio ${fusedMs.toFixed(1)} ms (${((100 * (fusedMs - plainMs)) / plainMs).toFixed(1).replace(/^(?!-)/, "+")}%), streaming ${streamingMs.toFixed(1)} ms`,
);

// The same machinery on a whole (tiny, random-weight) checkpoint: a hybrid session picks its lazy
// layers during prefill and decodes over rings for them.
async function tinyModel() {
  const dir = path.join(__dirname, "..", "..", "test", "fixtures", "models", "llama-tiny");
  const model = await loadModel(dir, { device, kvCacheBytes: 16 * 2 ** 20 });
  try {
    const prompt =
      "Lazy layers attend to the first tokens and to a recent window, while the other layers keep full attention over the whole prompt.";
    for (const hybrid of [{ mode: "off" as const }, { mode: "auto" as const, fullLayers: 1, sink: 4, window: 16, lastQueries: 8 }]) {
      const session = model.createSession({ hybrid });
      let text = "";
      for await (const chunk of session.generate(prompt, { maxNewTokens: 24, stopAtEos: false })) text += chunk.text;
      const s = session.stats;
      console.log(`\n${dir} (${model.config.architecture}, random weights), hybrid ${hybrid.mode}:`);
      console.log(
        `  lazy layers [${s.hybrid?.lazyLayers.join(", ") ?? ""}], ratios [${s.hybrid?.ratios.map((r) => r?.toFixed(3)).join(", ") ?? ""}]`,
      );
      console.log(
        `  KV ${s.kvBytes} B of ${s.kvBytesFull} B full; prefill ${s.prefillTokensPerSecond.toFixed(0)} tok/s, decode ${s.decodeTokensPerSecond.toFixed(0)} tok/s`,
      );
      console.log(`  text: ${JSON.stringify(text.slice(0, 60))}`);
      session.dispose();
    }
  } finally {
    await model.dispose();
  }
}
void tinyModel();
