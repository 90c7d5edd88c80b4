// Decode throughput of full vs hybrid caches under one KV memory budget (issue #5's benchmark).
//   node dist/bench/hybrid-throughput.js --model DIR --kv-memory 40GiB [--contexts 4096,8192,16384,32768]
//        [--steps 12] [--full-layers 0.5] [--output argmax|logits] [--device cuda:0] [--out results.json] [--plot plot.svg]
// For each context N and each mode, the batch is the largest the budget holds (planMemory, the
// runtime's own page arithmetic). The caches are set up directly — pages reserved per layer, full
// or ring — over a pool filled with random values (prefill is not what is timed), and decode
// steps are timed on the real model. Hybrid's lazy layers are the second half of the layers: which
// layers are lazy does not change the bytes a step reads. A step ends with its tokens on the host:
// with --output argmax (the default, what greedy generation runs) the argmax of each row of logits
// is taken on the device; with --output logits every sequence's logits are read back.
import * as fs from "node:fs";
import { loadModel, planMemory, Tensor } from "../lib";
import { parseByteSize } from "../lib/common/byte-size";
import type { Sequence } from "../lib/model/sequence";
import { readArgs } from "./args";
import { commandLine, printTable, randomNormals } from "./timing";

const args = readArgs(
  "node dist/bench/hybrid-throughput.js --model DIR [--kv-memory 40GiB] [--contexts 4096,8192,16384,32768] [--steps 12] " +
    "[--full-layers 0.5] [--output argmax|logits] [--max-batch 256] [--device cuda:0] [--out results.json] [--plot plot.svg]",
  {
    model: undefined,
    "kv-memory": "40GiB",
    contexts: "4096,8192,16384,32768",
    steps: "12",
    "full-layers": "0.5",
    output: "argmax",
    "max-batch": "256",
    device: "cuda:0",
    out: undefined,
    plot: undefined,
  },
);

async function main() {
  const dir = args.text("model");
  const kvBytes = parseByteSize(args.text("kv-memory"));
  const contexts = args.numbers("contexts", { integer: true, min: 1 });
  const steps = args.number("steps", { integer: true, min: 1 });
  const fraction = args.number("full-layers", { min: 0, max: 1 });
  const output = args.text("output");
  if (output !== "argmax" && output !== "logits") throw new Error(`--output must be argmax or logits, got ${output}`);
  const sink = 4,
    window = 1020,
    maxBatch = args.number("max-batch", { integer: true, min: 1 });
  const model = await loadModel(dir, { device: args.text("device") as "cuda:0", kvCacheBytes: kvBytes });
  const { config, pool } = model;
  const L = config.layers,
    P = Math.round(fraction * L);

  // Random pool contents: one random block tiled over every page.
  const block = Math.min(pool.numPages, 2048);
  const noise = Tensor.from(
    randomNormals(block * pool.pageSize * config.kvHeads * config.headDim),
    [block, pool.pageSize, config.kvHeads, config.headDim],
    { dtype: model.dtype, device: model.device },
  );
  for (const pages of [pool.kPages, pool.vPages])
    for (let p = 0; p < pool.numPages; p += block) {
      const n = Math.min(block, pool.numPages - p);
      const dst = pages.rows(p, n),
        src = noise.rows(0, n);
      dst.copyFrom(src);
      dst.dispose();
      src.dispose();
    }
  noise.dispose();

  const rows: Array<Record<string, string | number>> = [];
  const results: object[] = [];
  for (const N of contexts) {
    const plan = planMemory(config, {
      context: N + steps + 8,
      memoryBytes: pool.numPages * pool.pageBytes,
      weightBytes: 0,
      fullLayers: P,
      sink,
      window,
      pageSize: pool.pageSize,
      dtype: model.dtype,
    });
    if (!plan.hybrid)
      throw new Error(`${model.dir}: a sliding-window model has no full-attention layers to make lazy; benchmark a full-attention one`);
    const hybridBatch = plan.hybrid.maxBatch;
    const perMode: Record<
      string,
      { batch: number; stepMs: number; tokensPerSecond: number; fillMs: number; launchMs: number; readbackMs: number }
    > = {};
    for (const mode of ["full", "hybrid"] as const) {
      const batch = Math.min(maxBatch, mode === "full" ? plan.full.maxBatch : hybridBatch);
      const seqs: Sequence[] = [];
      for (let b = 0; b < batch; b++) {
        const seq = model.decoder.createSequence({ ringAtStart: (l) => (mode === "hybrid" && l >= P ? { sink, window } : undefined) });
        for (const c of seq.caches) c.reserve(N);
        seq.length = N;
        seqs.push(seq);
      }
      const ids = Array.from({ length: batch }, () => 1 + Math.floor(Math.random() * (config.vocabSize - 1)));
      const step = () => (output === "argmax" ? model.decoder.step(seqs, ids, "argmax") : model.decoder.step(seqs, ids, "logits"));
      step(); // warm-up (and the first read-back waits for the GPU)
      const before = model.decoder.stats;
      const times: number[] = [];
      for (let s = 0; s < steps; s++) {
        const t0 = performance.now();
        step(); // returns after the tokens or logits are back on the host
        times.push(performance.now() - t0);
      }
      for (const s of seqs) s.dispose();
      times.sort((a, b) => a - b);
      const stepMs = times[Math.floor(times.length / 2)];
      // Where a step's time goes on the host side (means over the timed steps).
      const after = model.decoder.stats;
      const phase = (key: "fillMs" | "launchMs" | "readbackMs") =>
        after.graphSteps > before.graphSteps ? (after[key] - before[key]) / steps : NaN;
      perMode[mode] = {
        batch,
        stepMs,
        tokensPerSecond: (1000 * batch) / stepMs,
        fillMs: phase("fillMs"),
        launchMs: phase("launchMs"),
        readbackMs: phase("readbackMs"),
      };
      console.log(
        `${N} ${mode}: batch ${batch}, step ${stepMs.toFixed(2)} ms (fill ${perMode[mode].fillMs.toFixed(2)}, launch ${perMode[mode].launchMs.toFixed(2)}, wait+read ${perMode[mode].readbackMs.toFixed(2)})`,
      );
    }
    const ideal = 1 / (P / L + (1 - P / L) * Math.min(1, (sink + window) / N));
    const ratio = perMode.hybrid.tokensPerSecond / perMode.full.tokensPerSecond;
    rows.push({
      context: N,
      "full batch": perMode.full.batch,
      "full tok/s": perMode.full.tokensPerSecond,
      "hybrid batch": perMode.hybrid.batch,
      "hybrid tok/s": perMode.hybrid.tokensPerSecond,
      ratio,
      ideal,
      "of ideal": `${((100 * ratio) / ideal).toFixed(0)}%`,
    });
    results.push({ context: N, full: perMode.full, hybrid: perMode.hybrid, ratio, ideal });
  }
  const all = (await import("../lib")).devices();
  const card = model.device === "cpu" ? all[0] : all.find((d) => d.id === model.device);
  const record = {
    date: new Date().toISOString(),
    card: card?.name,
    command: commandLine(),
    model: dir,
    output,
    kvBytes,
    layers: L,
    fullLayers: P,
    sink,
    window,
    pageSize: pool.pageSize,
    steps,
    results,
  };
  const out = args.optional("out");
  if (out) fs.writeFileSync(out, JSON.stringify(record, null, 2));
  const plot = args.optional("plot");
  if (plot) fs.writeFileSync(plot, ratioPlot(results as Array<{ context: number; ratio: number; ideal: number }>, String(card?.name)));
  console.log(
    `hybrid vs full decode throughput (${output}) on ${card?.name}: KV budget ${(kvBytes / 2 ** 30).toFixed(1)} GiB, P=${P}/${L}, S=${sink}, W=${window}`,
  );
  printTable(rows);
  await model.dispose();
}

/** Measured speed-up next to the ideal, per context: a small SVG bar chart. */
function ratioPlot(points: Array<{ context: number; ratio: number; ideal: number }>, card: string): string {
  const w = 120,
    h = 260,
    top = 40,
    left = 50,
    max = Math.max(2, ...points.map((p) => Math.max(p.ratio, p.ideal))) * 1.1;
  const y = (v: number) => top + h - (v / max) * h;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${left + points.length * w + 20}" height="${top + h + 50}" font-family="sans-serif" font-size="12">`,
    `<text x="${left}" y="20" font-size="14">hybrid / full decode throughput, one KV budget (${card})</text>`,
  ];
  for (let v = 0; v <= max; v += 0.5)
    parts.push(
      `<line x1="${left}" x2="${left + points.length * w}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/><text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(1)}×</text>`,
    );
  points.forEach((p, i) => {
    const x = left + i * w + 15;
    parts.push(
      `<rect x="${x}" y="${y(p.ideal)}" width="40" height="${top + h - y(p.ideal)}" fill="#bbb"><title>ideal ${p.ideal.toFixed(2)}</title></rect>`,
    );
    parts.push(
      `<rect x="${x + 45}" y="${y(p.ratio)}" width="40" height="${top + h - y(p.ratio)}" fill="#277f8e"><title>measured ${p.ratio.toFixed(2)}</title></rect>`,
    );
    parts.push(`<text x="${x + 42}" y="${top + h + 16}" text-anchor="middle">${p.context / 1024}K</text>`);
    parts.push(`<text x="${x + 65}" y="${y(p.ratio) - 4}" text-anchor="middle">${p.ratio.toFixed(2)}</text>`);
  });
  parts.push(
    `<rect x="${left}" y="${top + h + 28}" width="10" height="10" fill="#bbb"/><text x="${left + 14}" y="${top + h + 37}">ideal 1/(P/L + (1−P/L)(S+W)/N)</text>`,
  );
  parts.push(
    `<rect x="${left + 230}" y="${top + h + 28}" width="10" height="10" fill="#277f8e"/><text x="${left + 244}" y="${top + h + 37}">measured</text></svg>`,
  );
  return parts.join("\n");
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
