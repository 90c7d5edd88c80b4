// The memory planner, calibration and its layer file, the heatmap, and the CLI commands that
// use them (run from dist/, which `npm test` builds first).
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { XMLValidator } from "fast-xml-parser";
import { loadModel, type Model } from "../lib";
import { calibrate, layerFileOptions, readLayerFile } from "../lib/api/calibrate";
import { parseConfig } from "../lib/checkpoint/config";
import { Checkpoint } from "../lib/checkpoint/weights";
import { heatmapSvg } from "../lib/hybrid/heatmap";
import { planMemory } from "../lib/hybrid/planner";
import { readReference } from "./helpers/fixtures";
import { Random } from "./helpers/reference";
import { fixtureDir } from "./helpers/reference-model";

const rng = new Random();

const llama8b = parseConfig({
  architectures: ["LlamaForCausalLM"],
  vocab_size: 128256,
  hidden_size: 4096,
  intermediate_size: 14336,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-5,
  rope_theta: 500000,
  max_position_embeddings: 131072,
});

describe("memory planner", () => {
  test("KV bytes per sequence, full and hybrid, for a Llama-3-8B shape", () => {
    const plan = planMemory(llama8b, { context: 32768, memoryBytes: 80e9, weightBytes: 16.06e9, fullLayers: 16 });
    const hybrid = plan.hybrid!;
    // Full: 32 layers × 32768 tokens × 2 (K, V) × 8 heads × 128 × 2 bytes = 4 GiB.
    expect(plan.full.bytes).toBe(4 * 2 ** 30);
    // Hybrid: 16 full layers + 16 rings of 1024 slots.
    expect(hybrid.bytes).toBe(16 * 32768 * 4096 + 16 * 1024 * 4096);
    expect(plan.full.maxBatch).toBe(1 + Math.floor((plan.poolPages - plan.full.prefillPeakPages) / plan.full.pages));
    expect(hybrid.maxBatch).toBeGreaterThan(1.8 * plan.full.maxBatch);
    // The ideal ratio 1 / (P/L + (1 − P/L)(S+W)/N) of the issue at 32K is 1.94.
    expect(plan.full.bytes / hybrid.bytes).toBeCloseTo(1 / (0.5 + 0.5 * (1024 / 32768)), 6);
  });
  test("a sliding-window model: every layer holds its window, and no hybrid plan", () => {
    const window = 4096;
    const plan = planMemory(
      { ...llama8b, slidingWindow: window },
      { context: 32768, memoryBytes: 80e9, weightBytes: 16.06e9, fullLayers: 16 },
    );
    // 32 layers × 4096 window slots × 4096 bytes a token (K and V, 8 heads × 128, bf16).
    expect(plan.full.bytes).toBe(32 * window * 4096);
    expect(plan.full.prefillPeakPages).toBe(plan.full.pages);
    expect(plan.hybrid).toBeNull();
  });
  test("bad inputs", () => {
    expect(() => planMemory(llama8b, { context: 0, memoryBytes: 1e9, weightBytes: 0, fullLayers: 1 })).toThrow(
      /context must be an integer in \[1, \d+\], got 0/,
    );
    expect(() => planMemory(llama8b, { context: 10, memoryBytes: 1e9, weightBytes: 0, fullLayers: 33 })).toThrow(
      /fullLayers must be an integer in \[0, 32\]/,
    );
  });
});

describe("calibration", () => {
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(fixtureDir("llama-tiny"), { device: "cpu", kvCacheBytes: 8 * 2 ** 20 });
  });
  afterAll(async () => model?.dispose());

  test("an option calibrate does not take is refused, naming the hybrid options it belongs to (not the modes' own)", async () => {
    await expect(calibrate(model, ["a prompt"], { window: 256 } as never)).rejects.toThrow(
      /calibrate: options has no option "window" \(window: hybrid options, given as calibrate's hybrid: \{ \.\.\. \}\); its options are hybrid, maxContext, onProgress, signal$/,
    );
    for (const own of ["lazyLayers", "mode", "seed", "prefill"])
      await expect(calibrate(model, ["a prompt"], { [own]: 1 } as never)).rejects.toThrow(
        new RegExp(`has no option "${own}"; its options are hybrid, maxContext, onProgress, signal$`),
      );
  });

  test("calibrate's prompts are bounded by its maxContext (default: the model's positions)", async () => {
    const prompt = readReference("llama-tiny").cases[0].prompt;
    const tokens = model.tokenizer.encode(prompt).length;
    const hybrid = { fullLayers: 1, sink: 2, window: 2, lastQueries: 2 };
    await expect(calibrate(model, [prompt], { hybrid, maxContext: tokens - 1 })).rejects.toThrow(
      `calibrate: prompts[0] has ${tokens} tokens: more than maxContext ${tokens - 1}. Shorten the prompt or ask for a larger maxContext (calibrate's option`,
    );
    expect((await calibrate(model, [prompt], { hybrid, maxContext: tokens })).prompts).toBe(1);
    // One too long among several is refused by its index before any other runs.
    const session = jest.spyOn(model, "createSession");
    try {
      await expect(calibrate(model, [prompt, `${prompt} ${prompt}`, prompt], { hybrid, maxContext: tokens })).rejects.toThrow(
        /^calibrate: prompts\[1\] has \d+ tokens: more than maxContext/,
      );
      expect(session).not.toHaveBeenCalled();
    } finally {
      session.mockRestore();
    }
  });

  test("counts lazy choices over prompts; fixed mode reads the file back", async () => {
    const prompts = readReference("llama-tiny")
      .cases.slice(0, 2)
      .map((c) => c.prompt);
    const hybrid = { fullLayers: 1, sink: 2, window: 6, lastQueries: 4 };
    const file = await calibrate(model, prompts, { hybrid });
    expect(file.counts.reduce((a, b) => a + b, 0)).toBe(2 * prompts.length);
    expect(file.lazyLayers).toHaveLength(2);
    // Each prompt's own auto choice is what was counted.
    const counts = [0, 0, 0];
    for (const p of prompts) {
      const s = model.createSession({ hybrid: { ...hybrid, mode: "auto" } });
      for await (const _ of s.generate(p, { maxNewTokens: 0 }));
      for (const l of s.stats.hybrid!.lazyLayers) counts[l]++;
      s.dispose();
    }
    expect(file.counts).toEqual(counts);
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "lt-cal-")), "layers.json");
    fs.writeFileSync(out, JSON.stringify(file));
    const session = model.createSession({ hybrid: layerFileOptions(readLayerFile(out)) });
    for await (const _ of session.generate(prompts[1], { maxNewTokens: 2 }));
    expect(session.stats.hybrid!.lazyLayers).toEqual(file.lazyLayers);
    session.dispose();
    fs.writeFileSync(out, JSON.stringify({ ...file, lazyLayers: [7] }));
    expect(() => readLayerFile(out)).toThrow(/lazyLayers/);
    for (const notAnObject of ["null", "3", '"layers"']) {
      fs.writeFileSync(out, notAnObject);
      expect(() => readLayerFile(out)).toThrow(`${out}: needs 'layers' and a 'lazyLayers' list`);
    }
  });
});

test("the heatmap has one cell per value and marks lazy layers", () => {
  const svg = heatmapSvg({
    title: "t",
    values: [
      [0, 0.5],
      [1, undefined],
    ],
    rowLabel: "layer",
    columnLabel: "head",
    marked: new Set([1]),
  });
  expect(svg.match(/<rect x="\d+" y="\d+" width="\d+" height="\d+" fill="#[0-9a-f]{6}"><title>/g)).toHaveLength(3);
  expect(svg).toContain("layer 0, head 1: 0.5000");
  expect(svg).toContain("1 ◆");
});

describe(`heatmap, seed ${rng.seed}`, () => {
  test("the image holds everything it draws: a map of few rows its legend, a narrow one its title", () => {
    const rows = rng.int(1, 6);
    const cols = rng.int(1, 60);
    const values = Array.from({ length: rows }, () => Array.from({ length: cols }, () => (rng.next() < 0.2 ? undefined : rng.next())));
    const title = `lazy ratio, ${"/models/x".repeat(rng.int(1, 12))} (sink 4, window 256, last 32 queries)`;
    const svg = heatmapSvg({ title, values, rowLabel: "layer", columnLabel: "head", marked: new Set([rng.int(0, rows - 1)]) });
    expect(XMLValidator.validate(svg)).toBe(true);
    const [, width, height] = svg.match(/^<svg [^>]*width="(\d+)" height="(\d+)"/)!.map(Number);
    for (const [, x, y, w, h] of svg.matchAll(/<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)"/g)) {
      expect(Number(x) + Number(w)).toBeLessThanOrEqual(width);
      expect(Number(y) + Number(h)).toBeLessThanOrEqual(height);
    }
    // A text's baseline inside, with room below it for descenders.
    for (const [, y] of svg.matchAll(/<text x="[\d.]+" y="([\d.]+)"/g)) expect(Number(y)).toBeLessThanOrEqual(height - 3);
    // At least half the font size a character, what sans-serif fonts take on average.
    expect(width).toBeGreaterThanOrEqual(70 + title.length * 7);
  });
});

describe("CLI", () => {
  const cli = path.join(__dirname, "..", "dist", "lib", "cli", "index.js");
  const run = (...args: string[]) =>
    execFileSync(process.execPath, [cli, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

  test("plan prints per-sequence KV bytes and the largest batches", () => {
    const out = run(
      "plan",
      "--model",
      fixtureDir("llama-tiny"),
      "--context",
      "4096",
      "--memory",
      "64MiB",
      "--full-layers",
      "1",
      "--window",
      "60",
    );
    expect(out).toMatch(/KV per sequence: full 3.00 MiB, hybrid 1.03 MiB/);
    expect(out).toMatch(/largest batch: full 21, hybrid 60/);
  });
  test("plan --device cpu: an f32 KV cache and the weights as stored (loadModel's CPU defaults)", () => {
    const args = ["plan", "--model", fixtureDir("llama-tiny"), "--context", "4096", "--full-layers", "1", "--window", "60"];
    const cuda = run(...args, "--memory", "64MiB");
    const cpu = run(...args, "--memory", "64MiB", "--device", "cpu");
    expect(cuda).toMatch(/page 16 tokens \(4096 B\), KV in bf16 on cuda$/m);
    expect(cpu).toMatch(/page 16 tokens \(8192 B\), KV in f32 on cpu$/m);
    expect(cpu).toMatch(/KV per sequence: full 6.00 MiB, hybrid 2.06 MiB/);
    // The fixture stores bf16 weights: the same bytes on either device, half as many pages of twice the size.
    const pages = (out: string) => Number(/KV pool: (\d+) pages/.exec(out)![1]);
    expect(pages(cpu)).toBe(Math.floor(pages(cuda) / 2));
    expect(() => run(...args, "--memory", "64MiB", "--device", "tpu")).toThrow(/argument 'tpu' is invalid. Allowed choices are cuda, cpu/);
  });
  test("plan notes on stderr a budget that does not cover the weights and a context beyond the model's positions", () => {
    const plan = (memory: string, context: string) =>
      spawnSync(process.execPath, [cli, "plan", "-m", fixtureDir("llama-tiny"), "-c", context, "--memory", memory], { encoding: "utf8" });
    const small = plan("1KiB", "64");
    expect([small.status, small.stdout]).toEqual([0, expect.stringMatching(/KV pool: 0 pages/)]);
    expect(small.stderr).toMatch(/^note: --memory 1.0 KiB does not cover the weights \([\d.]+ [KM]iB\): no KV pool fits\n$/);
    const long = plan("64MiB", "5000");
    expect(long.status).toBe(0);
    expect(long.stderr).toBe(
      "note: context 5000 is beyond the model's max_position_embeddings (4096): a session holds it only when given a larger maxContext, and the model was not trained on positions that far\n",
    );
    expect(plan("64MiB", "4096").stderr).toBe("");
    // The weights as plan counts them: every tensor in bf16.
    const checkpoint = new Checkpoint(fixtureDir("llama-tiny"));
    let weights = 0;
    for (const f of checkpoint.files) for (const e of f.entries.values()) weights += e.shape.reduce((a, b) => a * b, 1) * 2;
    checkpoint.close();
    const tooFewPages = plan(String(weights + 2 * 16 * 2 * 64 * 2), "64");
    expect([tooFewPages.status, tooFewPages.stdout]).toEqual([0, expect.stringMatching(/KV pool: [12] pages/)]);
    expect(tooFewPages.stderr).toMatch(
      /^note: a sequence needs a KV page in each of the 3 layers; the pool beside the weights holds [12]\n$/,
    );
  });
  test("inspect prints ratios and writes a heatmap; generate streams text", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lt-cli-"));
    const prompts = path.join(dir, "prompts.txt");
    fs.writeFileSync(prompts, readReference("llama-tiny").cases[1].prompt);
    const svg = path.join(dir, "map.svg");
    const out = run(
      "inspect",
      "-m",
      fixtureDir("llama-tiny"),
      "-f",
      prompts,
      "-d",
      "cpu",
      "--full-layers",
      "1",
      "--sink",
      "2",
      "--window",
      "8",
      "--last-queries",
      "4",
      "--heatmap",
      svg,
    );
    expect(out).toMatch(/prompt 0: 53 tokens; lazy layers \d, \d/);
    expect(out.match(/layer +\d +0\.\d{4}/g)).toHaveLength(3);
    expect(fs.readFileSync(svg, "utf8")).toMatch(/^<svg/);
    const ref = readReference("qwen2-tiny").cases[0];
    const text = run("generate", "-m", fixtureDir("qwen2-tiny"), "-p", ref.prompt, "-d", "cpu", "-n", "8");
    expect(text.length).toBeGreaterThan(0);
  });
  test("errors are one clear line and a non-zero exit", () => {
    expect(() => run("generate", "-m", "/nonexistent", "-p", "x", "-d", "cpu")).toThrow(/config.json: not found/);
  });
});
