// Serving under load (issue #14's benchmark): Poisson arrivals of long-context requests against
// the OpenAI-compatible server on loopback, at rising rates, full caches vs hybrid auto, one KV
// budget (one model load, one page pool, the two modes one after the other).
//   node dist/bench/serve.js --model DIR --kv-memory 40GiB [--device cuda:0] [--prompts 4096,16384]
//        [--gen 256] [--rates 0.25,0.5,1,2,4] [--max-rate 64] [--requests 48] [--full-layers 0.5] [--modes full,hybrid]
//        [--ttft-bound 10] [--itl-bound 0.25] [--step-tokens 2048] [--seed 1] [--out serve.json] [--plot serve.svg]
//   node dist/bench/serve.js --plot-from a.json,b.json --plot serve.svg   (one plot of saved runs)
// Each request is a streamed completion of random token ids (`--prompts` tokens) generating exactly
// `--gen` tokens (ignore_eos); the server sends a chunk per token, so the client times each one.
// Per mode, prompt length and rate: throughput (generated tokens/s over the run), time to first
// token and inter-token latency p50/p99, and whether the rate is sustained: every request done, p99
// TTFT within --ttft-bound and p99 ITL within --itl-bound (seconds). Rates rise through --rates and
// then keep doubling (up to --max-rate) until one is not sustained, so the largest sustained rate
// of each mode is bracketed by the first rate it did not sustain. Run it against the random 8B
// checkpoint of tools/make_llama8b.py on a GPU; on the CPU, the tiny fixtures with tiny sizes
// check that it runs (--device cpu --prompts 64,256 --gen 8 --rates 2,8 --requests 8 --kv-memory 8MiB).
import * as fs from "node:fs";
import { createServer, cudaStatus, devices, loadModel } from "../lib";
import { parseByteSize } from "../lib/common/byte-size";
import { seededRandom } from "../lib/eval/random";
import { readArgs } from "./args";
import { commandLine, printTable } from "./timing";

const quantile = (sorted: number[], q: number) =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : Number.NaN;

interface RequestTiming {
  sent: number;
  /** Arrival time of each token's chunk (ms, performance.now()). */
  tokens: number[];
  ok: boolean;
}

/** One streamed completion, timed per token; a request that fails (or times out in the client) is not ok. */
async function timedRequest(url: string, body: object): Promise<RequestTiming> {
  const sent = performance.now();
  const tokens: number[] = [];
  try {
    return await readStream(url, body, sent, tokens);
  } catch {
    return { sent, tokens, ok: false };
  }
}

async function readStream(url: string, body: object, sent: number, tokens: number[]): Promise<RequestTiming> {
  const res = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (res.status !== 200 || !res.body) return { sent, tokens, ok: false };
  let buffered = "";
  let done = false;
  const decoder = new TextDecoder();
  for await (const bytes of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffered += decoder.decode(bytes, { stream: true });
    let end = buffered.indexOf("\n\n");
    while (end >= 0) {
      const event = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      end = buffered.indexOf("\n\n");
      const data = event.replace(/^data: /, "");
      if (data === "[DONE]") done = true;
      else if (JSON.parse(data).choices?.[0]?.finish_reason === null) tokens.push(performance.now());
    }
  }
  return { sent, tokens, ok: done };
}

interface RateResult {
  mode: string;
  prompt: number;
  rate: number;
  requests: number;
  completed: number;
  seconds: number;
  tokensPerSecond: number;
  ttftP50: number;
  ttftP99: number;
  itlP50: number;
  itlP99: number;
  sustained: boolean;
}

const args = readArgs(
  "node dist/bench/serve.js --model DIR [--kv-memory 40GiB] [--device cuda:0] [--prompts 4096,16384] [--gen 256] " +
    "[--rates 0.25,0.5,1,2,4] [--max-rate 64] [--requests 48] [--full-layers 0.5] [--modes full,hybrid] [--ttft-bound 10] " +
    "[--itl-bound 0.25] [--step-tokens 2048] [--seed 1] [--out serve.json] [--plot serve.svg]\n" +
    "       node dist/bench/serve.js --plot-from a.json,b.json --plot serve.svg",
  {
    "plot-from": undefined,
    plot: undefined,
    model: undefined,
    device: undefined,
    "kv-memory": "40GiB",
    prompts: "4096,16384",
    gen: "256",
    rates: "0.25,0.5,1,2,4",
    "max-rate": "64",
    requests: "48",
    "full-layers": "0.5",
    modes: "full,hybrid",
    "ttft-bound": "10",
    "itl-bound": "0.25",
    "step-tokens": "2048",
    seed: "1",
    out: undefined,
  },
);

async function main() {
  const replot = args.optional("plot-from");
  if (replot) return plotSavedRuns(replot.split(","), args.text("plot"));
  const dir = args.text("model");
  const device = args.optional("device") ?? (cudaStatus().available ? "cuda:0" : "cpu");
  const kvBytes = parseByteSize(args.text("kv-memory"));
  const prompts = args.numbers("prompts", { integer: true, min: 1 });
  const gen = args.number("gen", { integer: true, min: 1 });
  const rates = args.numbers("rates", { min: Number.MIN_VALUE });
  const maxRate = args.number("max-rate", { min: Number.MIN_VALUE });
  const perRate = args.number("requests", { integer: true, min: 1 });
  const fullLayers = args.number("full-layers", { min: 0 });
  const modes = args.text("modes").split(",");
  const ttftBound = args.number("ttft-bound", { min: Number.MIN_VALUE });
  const itlBound = args.number("itl-bound", { min: Number.MIN_VALUE });
  const stepTokens = args.number("step-tokens", { integer: true, min: 1 });
  const random = seededRandom(`serve|${args.text("seed")}`);
  const model = await loadModel(dir, { device: device as "cpu", kvCacheBytes: kvBytes, tokenizer: false });
  const vocab = model.config.vocabSize;
  const results: RateResult[] = [];
  // Continuous batching changes the batch size from step to step; how often the decode graphs are
  // re-recorded (and how many steps fall back to eager) shows whether the graph cache keeps up.
  const graphStats: Record<string, { graphSteps: number; eagerSteps: Record<string, number>; recordings: number }> = {};
  const stepStats: Record<string, Record<string, StepTimes>> = {};
  try {
    for (const mode of modes) {
      if (mode !== "full" && mode !== "hybrid") throw new Error(`--modes are full and hybrid, got ${mode}`);
      const hybrid = mode === "hybrid" ? { mode: "auto" as const, fullLayers } : undefined;
      const server = await createServer(model, {
        modelName: "bench",
        hybrid,
        maxQueue: 100_000,
        stepTokens,
        maxContext: Math.max(...prompts) + gen,
      });
      const url = await server.listen({ host: "127.0.0.1", port: 0 });
      try {
        const request = (promptTokens: number) => ({
          model: "bench",
          prompt: Array.from({ length: promptTokens }, () => Math.floor(random() * vocab)),
          max_tokens: gen,
          temperature: 0,
          stream: true,
          lighttransfer: { ignore_eos: true },
        });
        // Warm-up (CUDA graphs recorded, kernels loaded), not timed.
        await timedRequest(url, request(Math.min(...prompts)));
        for (const prompt of prompts)
          for (const rate of rateLadder(rates, maxRate)) {
            const result = await runRate(url, () => request(prompt), rate, perRate, random);
            const row: RateResult = {
              mode,
              prompt,
              rate,
              ...result,
              sustained: result.completed === perRate && result.ttftP99 <= ttftBound && result.itlP99 <= itlBound,
            };
            results.push(row);
            console.error(JSON.stringify(row));
            if (!row.sustained) break;
          }
        stepStats[mode] = stepTimes(await (await fetch(`${url}/metrics`)).text());
        for (const [kind, t] of Object.entries(stepStats[mode]))
          console.log(
            `${mode}: ${t.count} ${kind} turns, mean ${(t.meanSeconds * 1000).toFixed(1)} ms, ${(100 * t.over100ms).toFixed(1)}% over 100 ms`,
          );
      } finally {
        await server.close();
      }
      const { graphSteps, eagerSteps, recordings } = model.decoder.stats;
      graphStats[mode] = { graphSteps, eagerSteps: { ...eagerSteps }, recordings };
      console.log(
        `${mode}: decode graph steps ${graphSteps}, recordings ${recordings}, eager steps ${JSON.stringify(eagerSteps)} (cumulative)`,
      );
    }
  } finally {
    await model.dispose();
  }
  printTable(
    results.map((r) => ({
      mode: r.mode,
      prompt: r.prompt,
      "req/s": r.rate,
      done: `${r.completed}/${r.requests}`,
      "tok/s": r.tokensPerSecond,
      "TTFT p50 s": r.ttftP50,
      "TTFT p99 s": r.ttftP99,
      "ITL p50 ms": r.itlP50 * 1000,
      "ITL p99 ms": r.itlP99 * 1000,
      sustained: r.sustained ? "yes" : "no",
    })),
  );
  const largest = modes.flatMap((mode) =>
    prompts.map((prompt) => {
      const rows = results.filter((r) => r.mode === mode && r.prompt === prompt);
      return {
        mode,
        prompt,
        rate: Math.max(0, ...rows.filter((r) => r.sustained).map((r) => r.rate)),
        // null when every rate up to --max-rate was sustained: the largest is then only a lower bound.
        firstNotSustained: rows.find((r) => !r.sustained)?.rate ?? null,
      };
    }),
  );
  for (const l of largest)
    console.log(
      `${l.mode}, ${l.prompt}-token prompts: largest sustained rate ${l.rate} req/s ` +
        (l.firstNotSustained === null
          ? `(every rate up to --max-rate ${maxRate} was sustained)`
          : `(not sustained at ${l.firstNotSustained} req/s)`),
    );
  const card = devices().find((d) => d.id === (device === "cuda" ? "cuda:0" : device));
  const record = {
    command: commandLine(),
    device: card?.name ?? device,
    kvBytes,
    pool: { pages: model.pool.numPages, pageSize: model.pool.pageSize },
    gen,
    fullLayers,
    bounds: { ttftP99Seconds: ttftBound, itlP99Seconds: itlBound },
    results,
    largestSustainedRate: largest,
    decodeGraphs: graphStats,
    schedulerTurns: stepStats,
  };
  const out = args.optional("out");
  if (out) fs.writeFileSync(out, `${JSON.stringify(record, null, 2)}\n`);
  const plot = args.optional("plot");
  if (plot) fs.writeFileSync(plot, servePlot(results, plotTitle(record)));
}

function plotTitle(record: { device: string; kvBytes: number; gen: number }): string {
  const kv = record.kvBytes >= 2 ** 30 ? `${(record.kvBytes / 2 ** 30).toFixed(1)} GiB` : `${(record.kvBytes / 2 ** 20).toFixed(1)} MiB`;
  return `${record.device}, KV ${kv}, ${record.gen} tokens generated`;
}

/** One plot of the results of several saved runs (--out files) of the same device, KV budget and generated tokens. */
function plotSavedRuns(files: string[], plot: string): void {
  const records = files.map(
    (f) => JSON.parse(fs.readFileSync(f, "utf8")) as { device: string; kvBytes: number; gen: number; results: RateResult[] },
  );
  const titles = new Set(records.map(plotTitle));
  if (titles.size !== 1)
    throw new Error(`--plot-from: the runs differ in device, KV budget or generated tokens: ${[...titles].join(" | ")}`);
  fs.writeFileSync(
    plot,
    servePlot(
      records.flatMap((r) => r.results),
      [...titles][0],
    ),
  );
}

interface StepTimes {
  count: number;
  meanSeconds: number;
  /** Share of the turns that took more than 100 ms. */
  over100ms: number;
}

/** The scheduler's turns by kind, from the server's lighttransfer_step_seconds histogram (warm-up included). */
function stepTimes(metricsText: string): Record<string, StepTimes> {
  const value = (name: string, kind: string, le?: string) => {
    const labels = le === undefined ? `kind="${kind}"` : `le="${le}",kind="${kind}"`;
    const line = metricsText.split("\n").find((l) => l.startsWith(`${name}{${labels}} `));
    return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : 0;
  };
  const out: Record<string, StepTimes> = {};
  for (const kind of ["prefill", "decode", "mixed"]) {
    const count = value("lighttransfer_step_seconds_count", kind);
    if (!count) continue;
    out[kind] = {
      count,
      meanSeconds: value("lighttransfer_step_seconds_sum", kind) / count,
      over100ms: 1 - value("lighttransfer_step_seconds_bucket", kind, "0.1") / count,
    };
  }
  return out;
}

/**
 * The rates to try: `rates`, then doubling from the last one while at most `maxRate` (the caller
 * stops at the first rate not sustained).
 * @example [...rateLadder([1, 2], 8)] // [1, 2, 4, 8]
 */
function* rateLadder(rates: readonly number[], maxRate: number): Generator<number> {
  yield* rates;
  for (let rate = 2 * rates[rates.length - 1]; rate <= maxRate; rate *= 2) yield rate;
}

/** Poisson arrivals at `rate` requests/s: `count` requests, each timed; throughput over the whole run. */
async function runRate(url: string, makeRequest: () => object, rate: number, count: number, random: () => number) {
  const start = performance.now();
  const runs: Array<Promise<RequestTiming>> = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    at += (-Math.log(1 - random()) / rate) * 1000;
    const wait = start + at - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    runs.push(timedRequest(url, makeRequest()));
  }
  const timings = await Promise.all(runs);
  const seconds = (performance.now() - start) / 1000;
  const done = timings.filter((t) => t.ok);
  const ttft = done.map((t) => (t.tokens[0] - t.sent) / 1000).sort((a, b) => a - b);
  const itl = done.flatMap((t) => t.tokens.slice(1).map((time, i) => (time - t.tokens[i]) / 1000)).sort((a, b) => a - b);
  const tokens = done.reduce((sum, t) => sum + t.tokens.length, 0);
  return {
    requests: count,
    completed: done.length,
    seconds,
    tokensPerSecond: tokens / seconds,
    ttftP50: quantile(ttft, 0.5),
    ttftP99: quantile(ttft, 0.99),
    itlP50: quantile(itl, 0.5),
    itlP99: quantile(itl, 0.99),
  };
}

/** Two panels against the request rate: throughput, and p99 time to first token; a line per mode and prompt length. */
function servePlot(results: RateResult[], title: string): string {
  const series = [...new Set(results.map((r) => `${r.mode} ${r.prompt}`))];
  const colors = ["#277f8e", "#e07b39", "#4a2377", "#8fbc3b", "#c23b22", "#1f5fa8"];
  const rates = results.map((r) => r.rate);
  const [minRate, maxRate] = [Math.min(...rates), Math.max(...rates)];
  const w = 360,
    h = 240,
    left = 60,
    top = 40,
    gap = 90;
  const x = (rate: number) =>
    left + (maxRate === minRate ? w / 2 : ((Math.log(rate) - Math.log(minRate)) / (Math.log(maxRate) - Math.log(minRate))) * w);
  const panel = (offset: number, label: string, value: (r: RateResult) => number) => {
    const finite = results.map(value).filter(Number.isFinite);
    const maxValue = Math.max(1e-9, ...finite) * 1.1;
    const y = (v: number) => top + h - (v / maxValue) * h;
    const parts = [
      `<g transform="translate(${offset},0)">`,
      `<rect x="${left}" y="${top}" width="${w}" height="${h}" fill="none" stroke="#999"/>`,
      `<text x="${left + w / 2}" y="${top - 8}" text-anchor="middle">${label}</text>`,
      `<text x="${left - 6}" y="${top + 4}" text-anchor="end">${maxValue.toPrecision(3)}</text>`,
      `<text x="${left - 6}" y="${top + h}" text-anchor="end">0</text>`,
      ...[...new Set(rates)].map((r) => `<text x="${x(r)}" y="${top + h + 16}" text-anchor="middle">${r}</text>`),
      `<text x="${left + w / 2}" y="${top + h + 34}" text-anchor="middle">requests/s (log)</text>`,
    ];
    series.forEach((name, i) => {
      const points = results.filter((r) => `${r.mode} ${r.prompt}` === name && Number.isFinite(value(r)));
      const color = colors[i % colors.length];
      parts.push(
        `<polyline fill="none" stroke="${color}" stroke-width="2" points="${points.map((r) => `${x(r.rate)},${y(value(r))}`).join(" ")}"/>`,
      );
      for (const r of points)
        parts.push(`<circle cx="${x(r.rate)}" cy="${y(value(r))}" r="3.5" fill="${r.sustained ? color : "white"}" stroke="${color}"/>`);
    });
    parts.push("</g>");
    return parts.join("\n");
  };
  const width = 2 * (left + w) + gap;
  const legend = series.map(
    (name, i) =>
      `<rect x="${left + i * 150}" y="${top + h + 50}" width="10" height="10" fill="${colors[i % colors.length]}"/><text x="${left + i * 150 + 14}" y="${top + h + 59}">${name}</text>`,
  );
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${top + h + 90}" font-family="sans-serif" font-size="12">`,
    `<text x="${left}" y="16" font-size="14">${title}</text>`,
    panel(0, "generated tokens/s", (r) => r.tokensPerSecond),
    panel(left + w + gap, "p99 time to first token (s)", (r) => r.ttftP99),
    ...legend,
    `<text x="${left}" y="${top + h + 80}">open markers: rate not sustained (a request failed, or p99 TTFT / ITL beyond the bound)</text>`,
    "</svg>",
  ].join("\n");
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
