// `node dist/bench/model-decode.js MODEL_DIR [--hf hf.json] [--out ours.json] [--md table.md]`:
// batched decode of a Llama-3-8B-shaped checkpoint (tools/make_llama8b.py) on CUDA, reported
// as a fraction of the weight-bandwidth roofline and beside Hugging Face transformers on the
// same weights (tools/hf_decode_bench.py, run first in the same job; --hf reads its JSON).
//
// 1. The card and its device-to-device copy bandwidth (bytes read + written over time).
// 2. Correctness: prefill and first decode-step logits against transformers' (reference.json
//    of make_llama8b.py): ours and transformers' bf16 logits are both compared with the
//    float32 forward of the same weights, and ours must stay within twice transformers' own
//    bf16 error (both round the same ops to bf16; a wrong rotation, mask or cache slot gives
//    errors of order one).
// 3. Per-step overhead at batch 1 and a 32-token context: N-API calls per step, and the step
//    time op by op (LIGHTTRANSFER_DECODE_GRAPHS=off) and replayed from a CUDA graph.
// 4. The grid: for each context, random prompts prefilled one by one (prefill tok/s), then for
//    each batch the median greedy decode step (warm-up first), graph and op by op, and a sampled
//    step (temperature 0.8, topK 50, topP 0.9) from the device's top candidates and from whole
//    rows of logits read back; and the greedy step launched ahead as the generation loop runs it
//    (step t + 1 queued on the device before step t's tokens are read back).
// 5. At batch 1, for each context: greedy generation as a user runs it (Session.generate, a
//    token per chunk), per token, with steps launched ahead and with LIGHTTRANSFER_LAUNCH_AHEAD=off,
//    in turns (on, off, off, on).
// Options: --batches 1,8,32 --contexts 4096,16384 --steps 24 --warmup 4 --eager-steps 8
// --prefill-chunk N (tokens per prefill chunk; default the runtime's).
import * as fs from "node:fs";
import * as path from "node:path";
import { devices, loadModel, type Model, Tensor } from "../lib";
import { Sampler } from "../lib/generate/sampling";
import { sampleOnDevice, sampleWholeRows } from "../lib/generate/step";
import type { Sequence } from "../lib/model/sequence";
import { addon } from "../lib/runtime/native";
import { readArgs } from "./args";
import { commandLine, printTable } from "./timing";

const usage =
  "node dist/bench/model-decode.js MODEL_DIR [--batches 1,8,32] [--contexts 4096,16384] [--steps 24] [--warmup 4] " +
  "[--eager-steps 8] [--prefill-chunk N] [--hf hf.json] [--out ours.json] [--md table.md]";
const args = readArgs(
  usage,
  {
    batches: "1,8,32",
    contexts: "4096,16384",
    steps: "24",
    warmup: "4",
    "eager-steps": "8",
    "prefill-chunk": undefined,
    hf: undefined,
    out: undefined,
    md: undefined,
  },
  { positional: true },
);
const modelDir =
  args.positional ??
  (() => {
    throw new Error(`usage: ${usage}`);
  })();
const batches = args.numbers("batches", { integer: true, min: 1 });
const contexts = args.numbers("contexts", { integer: true, min: 1 });
const steps = args.number("steps", { integer: true, min: 1 });
const warmup = args.number("warmup", { integer: true, min: 0 });
const eagerSteps = args.number("eager-steps", { integer: true, min: 1 });
const prefillChunk = args.optional("prefill-chunk") === undefined ? undefined : args.number("prefill-chunk", { integer: true, min: 1 });
const device = "cuda:0" as const;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const log = (...parts: unknown[]) => console.log(`[${(performance.now() / 1000).toFixed(1)}s]`, ...parts);

/** A seeded generator: the same prompts on every run. */
function lcg(seed: number) {
  let s = seed >>> 0;
  return (n: number) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % n;
  };
}

function withGraphs<T>(on: boolean, run: () => T): T {
  const before = process.env.LIGHTTRANSFER_DECODE_GRAPHS;
  process.env.LIGHTTRANSFER_DECODE_GRAPHS = on ? "on" : "off";
  try {
    return run();
  } finally {
    if (before === undefined) delete process.env.LIGHTTRANSFER_DECODE_GRAPHS;
    else process.env.LIGHTTRANSFER_DECODE_GRAPHS = before;
  }
}

/** Bytes read + written per second by a large device-to-device copy (the card's ceiling). */
function copyBandwidth(): number {
  const elems = 2 ** 29; // 1 GiB of bf16
  const a = Tensor.empty([elems], "bf16", device),
    b = Tensor.empty([elems], "bf16", device);
  const wait = () => {
    const v = b.rows(0, 1);
    v.toFloat32Array();
    v.dispose();
  };
  try {
    for (let i = 0; i < 3; i++) b.copyFrom(a);
    wait();
    const rates: number[] = [];
    for (let rep = 0; rep < 5; rep++) {
      const t0 = performance.now();
      for (let i = 0; i < 10; i++) b.copyFrom(a);
      wait();
      rates.push((10 * 2 * 2 * elems) / ((performance.now() - t0) / 1000));
    }
    return median(rates);
  } finally {
    a.dispose();
    b.dispose();
  }
}

/**
 * N-API crossings made by `run`: kernel and graph calls on the addon, and the tensor calls
 * that reach native code (allocate, upload, view, read, dispose).
 */
function countNativeCalls(run: () => void): number {
  let calls = 0;
  const restore: Array<() => void> = [];
  const wrap = (target: Record<string, unknown>, key: string) => {
    const fn = target[key] as (...a: unknown[]) => unknown;
    target[key] = function (this: unknown, ...a: unknown[]) {
      calls++;
      return fn.apply(this, a);
    };
    restore.push(() => (target[key] = fn));
  };
  const native = addon() as unknown as Record<string, unknown>;
  for (const key of Object.keys(native)) if (typeof native[key] === "function" && key !== "NativeTensor") wrap(native, key);
  const statics = Tensor as unknown as Record<string, unknown>;
  wrap(statics, "empty");
  const proto = Tensor.prototype as unknown as Record<string, unknown>;
  for (const key of ["write", "toArray", "toFloat32Array", "reshape", "rows", "copyFrom", "dispose"]) wrap(proto, key);
  // Tensor.from is empty() plus one write through the handle.
  const from = statics.from as (...a: unknown[]) => unknown;
  statics.from = (...a: unknown[]) => {
    calls++;
    return from.apply(Tensor, a);
  };
  restore.push(() => (statics.from = from));
  try {
    run();
  } finally {
    for (const r of restore.reverse()) r();
  }
  return calls;
}

function relError(got: Float32Array, want: Float32Array): number {
  let num = 0,
    den = 0;
  for (let i = 0; i < want.length; i++) {
    num += (got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  return Math.sqrt(num / den);
}
const argmax = (a: Float32Array) => a.reduce((best, v, i) => (v > a[best] ? i : best), 0);
const readF32 = (file: string) => {
  const buf = fs.readFileSync(file);
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
};

interface Reference {
  ids: number[];
  next: number;
  logits: Record<"prefill" | "step", Record<"bf16" | "f32", string>>;
}

function checkAgainstTransformers(model: Model) {
  const ref: Reference = JSON.parse(fs.readFileSync(path.join(modelDir!, "reference.json"), "utf8"));
  const load = (which: "prefill" | "step", dtype: "bf16" | "f32") => readF32(path.join(modelDir!, ref.logits[which][dtype]));
  const dec = model.decoder;
  const results: Record<string, number | boolean | string> = {};
  for (const graphs of [true, false]) {
    const seq = dec.createSequence();
    try {
      const prefill = dec.prefill(seq, ref.ids);
      const step = withGraphs(graphs, () => dec.step([seq], [ref.next], "logits"));
      for (const [which, ours] of [
        ["prefill", prefill],
        ["step", step],
      ] as const) {
        const f32 = load(which, "f32"),
          hf = load(which, "bf16");
        const hfError = relError(hf, f32),
          ourError = relError(ours, f32);
        const tag = which === "prefill" ? "prefill" : graphs ? "step (graph)" : "step (op by op)";
        results[`${tag}: ours vs f32`] = ourError;
        results[`${tag}: transformers bf16 vs f32`] = hfError;
        results[`${tag}: ours vs transformers bf16`] = relError(ours, hf);
        results[`${tag}: bound (2x transformers)`] = 2 * hfError;
        results[`${tag}: pass`] = ourError <= 2 * hfError;
        results[`${tag}: argmax ours / f32 / transformers`] = `${argmax(ours)} / ${argmax(f32)} / ${argmax(hf)}`;
      }
    } finally {
      seq.dispose();
    }
  }
  return results;
}

/** Decode step of `seqs` at batch 1 over a short context: native calls and times, op by op vs graph. */
function stepOverhead(model: Model, random: (n: number) => number) {
  const dec = model.decoder,
    vocab = model.config.vocabSize;
  const out: Record<string, number> = {};
  for (const graphs of [false, true]) {
    const seq = dec.createSequence();
    try {
      dec.prefill(
        seq,
        Array.from({ length: 32 }, () => random(vocab)),
      );
      const step = () => withGraphs(graphs, () => dec.step([seq], [random(vocab)], "logits"));
      for (let i = 0; i < warmup; i++) step();
      const calls = countNativeCalls(step);
      const times: number[] = [];
      for (let i = 0; i < 30; i++) {
        const t0 = performance.now();
        step();
        times.push(performance.now() - t0);
      }
      const mode = graphs ? "graph" : "opByOp";
      out[`${mode}NativeCalls`] = calls;
      out[`${mode}StepMs`] = median(times);
    } finally {
      seq.dispose();
    }
  }
  return out;
}

/** What reading a greedy step's tokens back costs at each batch: the step's last act. */
function readbackCost() {
  const rows: Record<string, number>[] = [];
  for (const B of batches) {
    const t = Tensor.from(
      Int32Array.from({ length: B }, (_, i) => i + 1),
      [B],
      { device },
    );
    try {
      for (let i = 0; i < 3; i++) t.toArray();
      const times: number[] = [];
      for (let i = 0; i < 10; i++) {
        const t0 = performance.now();
        t.toArray();
        times.push(performance.now() - t0);
      }
      rows.push({ batch: B, readbackMs: median(times) });
    } finally {
      t.dispose();
    }
  }
  return rows;
}

interface GridRow {
  batch: number;
  context: number;
  meanContext: number;
  prefillTokPerS: number;
  graphStepMs: number;
  /** Per graph step, from DecodeGraphStats: host work before the launch, the launch call, the wait and read-back. */
  fillMs: number;
  launchMs: number;
  readbackMs: number;
  opByOpStepMs: number;
  /** A greedy step launched ahead, as the generation loop runs it (timeAheadSteps). */
  aheadStepMs: number;
  aheadWeightRoofline: number;
  /** A sampled step (temperature 0.8, topK 50, topP 0.9) through sampleOnDevice (top candidates on the device) ... */
  sampledStepMs: number;
  /** ... and through the whole logits read back and sampled on the host. */
  sampledOnHostStepMs: number;
  tokPerS: number;
  weightRoofline: number;
  weightKvRoofline: number;
}

/** Median step time after warm-up, and the graph path's per-step host split over the timed steps. */
function timeSteps(model: Model, seqs: Sequence[], graphs: boolean, count: number, random: (n: number) => number) {
  const vocab = model.config.vocabSize;
  // A greedy step, as transformers' side is timed: forward and argmax, the tokens on the host.
  const step = () =>
    withGraphs(graphs, () =>
      model.decoder.step(
        seqs,
        seqs.map(() => random(vocab)),
        "argmax",
      ),
    );
  for (let i = 0; i < warmup; i++) step();
  const before = model.decoder.stats;
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    step();
    times.push(performance.now() - t0);
  }
  const after = model.decoder.stats;
  const perStep = (key: "fillMs" | "launchMs" | "readbackMs") =>
    (after[key] - before[key]) / Math.max(1, after.graphSteps - before.graphSteps);
  return { ms: median(times), fillMs: perStep("fillMs"), launchMs: perStep("launchMs"), readbackMs: perStep("readbackMs") };
}

/**
 * A greedy step as the generation loop runs it when it launches ahead: each step queued on the
 * device, its ids the tokens the step before chose there, before that step's tokens are read
 * back. The mean over `count` steps after warm-up (a step's time is the gap between reads).
 */
function timeAheadSteps(model: Model, seqs: Sequence[], count: number, random: (n: number) => number): number {
  const dec = model.decoder;
  const run = (n: number) => {
    let launched = dec.launchGreedy(
      seqs,
      seqs.map(() => random(model.config.vocabSize)),
    );
    for (let i = 1; i < n; i++) {
      const next = dec.launchGreedy(seqs, launched);
      launched.tokens();
      launched = next;
    }
    launched.tokens();
  };
  run(warmup);
  const t0 = performance.now();
  run(count);
  return (performance.now() - t0) / count;
}

/**
 * Greedy generation at batch 1 as a user runs it: Session.generate over a `context`-token prompt,
 * a token per chunk; the mean time between chunks after warm-up, with steps launched ahead and
 * with LIGHTTRANSFER_LAUNCH_AHEAD=off, in turns (on, off, off, on).
 */
async function timeGenerate(model: Model, context: number, random: (n: number) => number) {
  const prompt = Int32Array.from({ length: context }, () => random(model.config.vocabSize));
  const once = async (ahead: boolean) => {
    const before = process.env.LIGHTTRANSFER_LAUNCH_AHEAD;
    if (ahead) delete process.env.LIGHTTRANSFER_LAUNCH_AHEAD;
    else process.env.LIGHTTRANSFER_LAUNCH_AHEAD = "off";
    const session = model.createSession({ maxContext: context + warmup + steps + 8 });
    try {
      const stamps: number[] = [];
      for await (const _ of session.generate(prompt, { maxNewTokens: warmup + steps + 1, stopAtEos: false }))
        stamps.push(performance.now());
      return (stamps[stamps.length - 1] - stamps[warmup]) / (stamps.length - 1 - warmup);
    } finally {
      session.dispose();
      if (before === undefined) delete process.env.LIGHTTRANSFER_LAUNCH_AHEAD;
      else process.env.LIGHTTRANSFER_LAUNCH_AHEAD = before;
    }
  };
  const aheadMs = [await once(true)],
    notAheadMs = [await once(false), await once(false)];
  aheadMs.push(await once(true));
  return { context, aheadMs, notAheadMs };
}

/** Median sampled step: from the top candidates on the device, and from whole rows on the host. */
function timeSampledSteps(model: Model, seqs: Sequence[], count: number, random: (n: number) => number) {
  const vocab = model.config.vocabSize;
  const options = { temperature: 0.8, topK: 50, topP: 0.9 };
  const samplers = seqs.map((_, b) => new Sampler({ ...options, seed: b }));
  const viaCandidates = () =>
    sampleOnDevice(
      model.decoder,
      seqs,
      seqs.map(() => random(vocab)),
      samplers,
      seqs.map(() => []),
    );
  const viaRows = () =>
    sampleWholeRows(
      model.decoder,
      seqs,
      seqs.map(() => random(vocab)),
      samplers,
      seqs.map(() => []),
    );
  const time = (step: () => number[]) => {
    for (let i = 0; i < warmup; i++) step();
    const times: number[] = [];
    for (let i = 0; i < count; i++) {
      const t0 = performance.now();
      step();
      times.push(performance.now() - t0);
    }
    return median(times);
  };
  return { candidatesMs: time(viaCandidates), wholeRowsMs: time(viaRows) };
}

async function main() {
  const card = devices().find((d) => d.id === device);
  if (card?.type !== "cuda") throw new Error("this benchmark needs a CUDA device");
  log(`card ${card.name}, ${(card.totalMemory / 2 ** 30).toFixed(1)} GiB, ${(card.freeMemory / 2 ** 30).toFixed(1)} GiB free`);
  const copyBytesPerS = copyBandwidth();
  log(`device-to-device copy: ${(copyBytesPerS / 1e9).toFixed(0)} GB/s (read + written)`);

  // The pool: what the largest point needs, or what fits beside the weights and ~6 GiB of work space.
  const config = JSON.parse(fs.readFileSync(path.join(modelDir!, "config.json"), "utf8"));
  const layers: number = config.num_hidden_layers,
    kvHeads: number = config.num_key_value_heads;
  const headDim: number = config.head_dim ?? config.hidden_size / config.num_attention_heads;
  const pageSize = 16,
    pageBytes = 2 * pageSize * kvHeads * headDim * 2;
  const margin = 128 + warmup * 8 + steps * 4 + eagerSteps * 3;
  const pagesFor = (seqsAt: number, ctx: number) => seqsAt * layers * Math.ceil((ctx + margin) / pageSize);
  const checkpointBytes = fs
    .readdirSync(modelDir!)
    .filter((f) => f.endsWith(".safetensors"))
    .reduce((a, f) => a + fs.statSync(path.join(modelDir!, f)).size, 0);
  const maxBatch = Math.max(...batches);
  const wanted = Math.max(...contexts.map((c) => pagesFor(maxBatch, c))) * pageBytes;
  const kvCacheBytes = Math.min(wanted, card.freeMemory - checkpointBytes - 6 * 2 ** 30);
  let t0 = performance.now();
  const model = await loadModel(modelDir!, { device, kvCacheBytes, pageSize });
  const loadS = (performance.now() - t0) / 1000;
  log(
    `loaded in ${loadS.toFixed(1)} s: ${(model.weightBytes / 1e9).toFixed(2)} GB of weights, KV pool ${((model.pool.numPages * model.pool.pageBytes) / 1e9).toFixed(1)} GB (${(wanted / 1e9).toFixed(1)} GB wanted)`,
  );
  const random = lcg(20261126);
  const vocab = model.config.vocabSize;
  const dec = model.decoder;

  const correctness = checkAgainstTransformers(model);
  log("correctness", correctness);
  const overhead = stepOverhead(model, random);
  log("per-step overhead at batch 1, 32-token context", overhead);
  const readback = readbackCost();
  log("tokens read-back", readback);

  // Bytes a step must read: every weight but the embedding table (of which it reads B rows), and the K/V.
  const embedBytes = model.config.vocabSize * model.config.hiddenSize * 2;
  const kvBytesPerToken = layers * 2 * kvHeads * headDim * 2;
  const grid: GridRow[] = [];
  const skipped: string[] = [];
  for (const ctx of contexts) {
    const fit = Math.floor(model.pool.numPages / pagesFor(1, ctx));
    const count = Math.min(maxBatch, fit);
    for (const B of batches)
      if (B > count)
        skipped.push(
          `batch ${B} × context ${ctx}: ${B} sequences of ${ctx} tokens need ${((pagesFor(B, ctx) * pageBytes) / 1e9).toFixed(1)} GB of KV cache; ${((model.pool.numPages * pageBytes) / 1e9).toFixed(1)} GB fit on this card`,
        );
    const seqs: Sequence[] = [];
    const prefillMs: number[] = [];
    try {
      for (let i = 0; i < count; i++) {
        const seq = dec.createSequence();
        seqs.push(seq);
        t0 = performance.now();
        dec.prefill(
          seq,
          Array.from({ length: ctx }, () => random(vocab)),
          { chunkSize: prefillChunk },
        );
        prefillMs.push(performance.now() - t0);
      }
      const prefillTokPerS = ctx / (median(prefillMs) / 1000);
      log(
        `context ${ctx}: ${count} prompts prefilled, median ${median(prefillMs).toFixed(0)} ms each (${prefillTokPerS.toFixed(0)} tok/s)`,
      );
      for (const B of batches.filter((b) => b <= count)) {
        const batch = seqs.slice(0, B);
        const graph = timeSteps(model, batch, true, steps, random);
        const graphStepMs = graph.ms;
        const meanContext = batch.reduce((a, s) => a + s.length, 0) / B;
        const opByOpStepMs = timeSteps(model, batch, false, eagerSteps, random).ms;
        const aheadStepMs = timeAheadSteps(model, batch, steps, random);
        const sampled = timeSampledSteps(model, batch, eagerSteps, random);
        const stepWeightBytes = model.weightBytes - embedBytes + B * model.config.hiddenSize * 2;
        const kvBytes = B * meanContext * kvBytesPerToken;
        const row: GridRow = {
          batch: B,
          context: ctx,
          meanContext,
          prefillTokPerS,
          graphStepMs,
          opByOpStepMs,
          aheadStepMs,
          aheadWeightRoofline: stepWeightBytes / copyBytesPerS / (aheadStepMs / 1000),
          fillMs: graph.fillMs,
          launchMs: graph.launchMs,
          readbackMs: graph.readbackMs,
          sampledStepMs: sampled.candidatesMs,
          sampledOnHostStepMs: sampled.wholeRowsMs,
          tokPerS: B / (graphStepMs / 1000),
          weightRoofline: stepWeightBytes / copyBytesPerS / (graphStepMs / 1000),
          weightKvRoofline: (stepWeightBytes + kvBytes) / copyBytesPerS / (graphStepMs / 1000),
        };
        grid.push(row);
        log(
          `batch ${B} context ${ctx}: graph ${graphStepMs.toFixed(2)} ms/step (fill ${row.fillMs.toFixed(2)}, launch ${row.launchMs.toFixed(2)}, ` +
            `wait + read-back ${row.readbackMs.toFixed(2)}), launched ahead ${aheadStepMs.toFixed(3)} ms/step, op by op ${opByOpStepMs.toFixed(2)} ms/step; sampled ${sampled.candidatesMs.toFixed(2)} ms/step ` +
            `(whole rows on the host ${sampled.wholeRowsMs.toFixed(2)})`,
        );
      }
    } finally {
      for (const s of seqs) s.dispose();
    }
  }
  const generation = [];
  if (batches.includes(1))
    for (const ctx of contexts) {
      const g = await timeGenerate(model, ctx, random);
      generation.push(g);
      log(
        `Session.generate at context ${ctx}: launched ahead ${g.aheadMs.map((x) => x.toFixed(3)).join(", ")} ms a token, ` +
          `LIGHTTRANSFER_LAUNCH_AHEAD=off ${g.notAheadMs.map((x) => x.toFixed(3)).join(", ")}`,
      );
    }
  const graphStats = dec.stats;
  const weightBytes = model.weightBytes;
  await model.dispose();

  const hfFile = args.optional("hf");
  const hf = hfFile && fs.existsSync(hfFile) ? JSON.parse(fs.readFileSync(hfFile, "utf8")) : undefined;
  const hfBest = (B: number, ctx: number) => {
    const points = (hf?.decode ?? []).filter(
      (p: { batch: number; context: number; stepMs?: number }) => p.batch === B && p.context === ctx && p.stepMs,
    );
    return points.sort((a: { stepMs: number }, b: { stepMs: number }) => a.stepMs - b.stepMs)[0] as
      | { stepMs: number; variant: string }
      | undefined;
  };
  const hfPrefill = (ctx: number) =>
    (hf?.prefill ?? []).find((p: { context: number }) => p.context === ctx) as { tokPerS: number } | undefined;
  const rooflineTokPerS = (B: number) => (B * copyBytesPerS) / (weightBytes - embedBytes + B * model.config.hiddenSize * 2);
  const table = grid.map((r) => {
    const h = hfBest(r.batch, r.context);
    return {
      batch: r.batch,
      context: r.context,
      "prefill tok/s": Math.round(r.prefillTokPerS),
      "HF prefill tok/s": hfPrefill(r.context) ? Math.round(hfPrefill(r.context)!.tokPerS) : "-",
      "op-by-op ms": r.opByOpStepMs,
      "graph ms": r.graphStepMs,
      "launched ahead ms": r.aheadStepMs,
      "sampled ms": r.sampledStepMs,
      "sampled, rows on host ms": r.sampledOnHostStepMs,
      "host ms": r.fillMs + r.launchMs,
      "GPU ms (est.)": r.readbackMs - (readback.find((x) => x.batch === r.batch)?.readbackMs ?? 0),
      "tok/s": Math.round(r.tokPerS),
      "weight roofline tok/s": Math.round(rooflineTokPerS(r.batch)),
      "of weight roofline": `${(100 * r.weightRoofline).toFixed(0)}%`,
      "launched ahead, of weight roofline": `${(100 * r.aheadWeightRoofline).toFixed(1)}%`,
      "of weight+KV roofline": `${(100 * r.weightKvRoofline).toFixed(0)}%`,
      "HF ms": h ? h.stepMs : "-",
      "HF cache": h ? h.variant : "-",
      "vs HF": h ? `${(h.stepMs / r.graphStepMs).toFixed(2)}x` : "-",
    };
  });
  const result = {
    card: card.name,
    date: new Date().toISOString(),
    command: commandLine(),
    copyGBs: copyBytesPerS / 1e9,
    loadSeconds: loadS,
    weightBytes,
    correctness,
    overhead,
    readback,
    graphStats,
    grid,
    generation,
    skipped,
    transformers: hf,
  };
  const outFile = args.optional("out");
  if (outFile) fs.writeFileSync(outFile, JSON.stringify(result, null, 2));
  const mdFile = args.optional("md");
  if (mdFile && table.length) {
    const rows: Array<Record<string, string | number>> = table;
    const cols = Object.keys(rows[0]);
    const cell = (v: string | number) => (typeof v === "number" && !Number.isInteger(v) ? v.toFixed(2) : String(v));
    const md = [
      `| ${cols.join(" | ")} |`,
      `|${cols.map(() => "---:").join("|")}|`,
      ...rows.map((r) => `| ${cols.map((c) => cell(r[c])).join(" | ")} |`),
    ];
    fs.writeFileSync(mdFile, `${md.join("\n")}\n`);
  }
  if (skipped.length) console.log(`skipped:\n  ${skipped.join("\n  ")}`);
  console.log(
    `\n${card.name}: copy ${(copyBytesPerS / 1e9).toFixed(0)} GB/s; batch-1 weight roofline ${rooflineTokPerS(1).toFixed(0)} tok/s; graphs ${JSON.stringify(graphStats)}`,
  );
  console.log(
    `per-step at batch 1, 32-token context: op by op ${overhead.opByOpStepMs.toFixed(2)} ms (${overhead.opByOpNativeCalls} N-API calls), graph ${overhead.graphStepMs.toFixed(2)} ms (${overhead.graphNativeCalls} calls)`,
  );
  if (table.length) printTable(table);
  if (generation.length)
    printTable(
      generation.map((g) => {
        const ahead = (g.aheadMs[0] + g.aheadMs[1]) / 2,
          off = (g.notAheadMs[0] + g.notAheadMs[1]) / 2;
        return {
          context: g.context,
          "generate, launched ahead ms/token": ahead,
          "generate, not ahead ms/token": off,
          speedup: `${(off / ahead).toFixed(3)}x`,
          "launched ahead, of weight roofline": `${((100 * (weightBytes - embedBytes + model.config.hiddenSize * 2)) / copyBytesPerS / (ahead / 1000)).toFixed(1)}%`,
          "not ahead, of weight roofline": `${((100 * (weightBytes - embedBytes + model.config.hiddenSize * 2)) / copyBytesPerS / (off / 1000)).toFixed(1)}%`,
        };
      }),
    );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
