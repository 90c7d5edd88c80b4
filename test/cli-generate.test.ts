// `lighttransfer generate` in a child process (from dist/, which `npm test` builds first): token-id
// prompts, loading without a tokenizer, and the hybrid flags, each checked against the library.
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { type HybridOptions, loadModel, type Model } from "../lib";
import { fixtureRoot, readReference } from "./helpers/fixtures";
import { copyFixture } from "./helpers/model-dir";
import { Random } from "./helpers/reference";
import { writeSafetensors } from "./helpers/safetensors-file";

const rng = new Random();

const cli = path.join(__dirname, "..", "dist", "lib", "cli", "index.js");
const modelDir = path.join(fixtureRoot, "llama-tiny");
const reference = readReference("llama-tiny");

function run(...args: string[]): { stdout: string; stderr: string; status: number | null } {
  const r = spawnSync(process.execPath, [cli, "generate", "--model", modelDir, "--device", "cpu", ...args], { encoding: "utf8" });
  return { stdout: r.stdout, stderr: r.stderr, status: r.status };
}

let model: Model;
beforeAll(async () => {
  model = await loadModel(modelDir, { device: "cpu", kvCacheBytes: 4 * 2 ** 20 });
});
afterAll(async () => model?.dispose());

async function libraryTokens(ids: number[], n: number, hybrid?: HybridOptions) {
  const [result] = await model.generateBatch([ids], { maxNewTokens: n, hybrid });
  return result;
}

/** A fresh prompt of reference ids: a random slice of the long case, at least 12 tokens. */
function randomPrompt(): number[] {
  const ids = reference.cases[1].ids;
  const start = rng.int(0, 9);
  return ids.slice(start, start + rng.int(12, 31));
}

describe(`seed ${rng.seed}`, () => {
  test("--ids with --no-tokenizer prints the token ids the library generates", async () => {
    const ids = randomPrompt();
    const out = run("--ids", ids.join(","), "--no-tokenizer", "-n", "6", "--stats");
    expect(out.status).toBe(0);
    const expected = await libraryTokens(ids, 6);
    expect(out.stdout.trim()).toBe(expected.tokens.join(","));
    expect(out.stderr).toMatch(new RegExp(`prompt ${ids.length} tok .* hybrid off, lazy layers \\[\\]`));
  });

  test("--ids with a tokenizer prints the same text as the equivalent --prompt", () => {
    const c = reference.cases[2];
    const byText = run("--prompt", c.prompt, "-n", "5");
    const byIds = run("--ids", model.tokenizer.encode(c.prompt).join(","), "-n", "5");
    expect(byText.status).toBe(0);
    expect(byIds.stdout).toBe(byText.stdout);
  });

  test.each<[string, string[], HybridOptions]>([
    [
      "auto",
      ["--hybrid", "auto", "--full-layers", "1", "--sink", "1", "--window", "3"],
      { mode: "auto", fullLayers: 1, sink: 1, window: 3 },
    ],
    [
      "fixed",
      ["--hybrid", "fixed", "--lazy-layers", "0,2", "--sink", "2", "--window", "5"],
      { mode: "fixed", lazyLayers: [0, 2], sink: 2, window: 5 },
    ],
  ])("--hybrid %s and its flags reach the session", async (_, flags, hybrid) => {
    const ids = randomPrompt();
    const out = run("--ids", ids.join(","), "--no-tokenizer", "-n", "6", "--stats", ...flags);
    expect(out.status).toBe(0);
    const expected = await libraryTokens(ids, 6, hybrid);
    expect(out.stdout.trim()).toBe(expected.tokens.join(","));
    expect(expected.hybrid!.lazyLayers).toHaveLength(2);
    expect(out.stderr).toContain(`hybrid ${hybrid.mode}, lazy layers [${expected.hybrid!.lazyLayers.join(",")}]`);
  });

  test("--layer-file sets fixed mode's lazy layers, sink and window", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lt-layers-"));
    try {
      const file = path.join(dir, "layers.json");
      fs.writeFileSync(file, JSON.stringify({ layers: 3, lazyLayers: [1], sink: 1, window: 4, lastQueries: 32, fullLayers: 2 }));
      const ids = randomPrompt();
      const out = run("--ids", ids.join(","), "--no-tokenizer", "-n", "5", "--stats", "--hybrid", "fixed", "--layer-file", file);
      expect(out.status).toBe(0);
      const expected = await libraryTokens(ids, 5, { mode: "fixed", lazyLayers: [1], sink: 1, window: 4 });
      expect(out.stdout.trim()).toBe(expected.tokens.join(","));
      expect(out.stderr).toContain("hybrid fixed, lazy layers [1]");
      // The file's sink and window are the ones that run: flags that would be ignored are refused.
      for (const flag of ["--sink", "--window"]) {
        const both = run("--ids", ids.join(","), "-n", "1", "--hybrid", "fixed", "--layer-file", file, flag, "8");
        expect({ status: both.status, stderr: both.stderr }).toEqual({
          status: 1,
          stderr: expect.stringContaining(`option '--layer-file <file>' cannot be used with option '${flag} <n>'`),
        });
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test.each([
    ["bad id", ["--ids", "1,2,384"], /generate: prompt\[2\] is 384: token ids must be integers in \[0, 383\]/],
    ["ids that are not integers", ["--ids", "1,x"], /not a comma-separated list of integers: 1,x/],
    ["text without a tokenizer", ["--prompt", "hi", "--no-tokenizer"], /this model was loaded without a tokenizer; pass token ids/],
    ["no prompt", [], /generate needs a prompt: --prompt <text> or --ids <ids>/],
    ["both prompts", ["--prompt", "hi", "--ids", "1"], /cannot be used with option '--ids/],
    ["an unknown mode", ["--ids", "1", "--hybrid", "sometimes"], /Allowed choices are off, auto, fixed/],
    ["fixed without layers", ["--ids", "1", "--hybrid", "fixed"], /--hybrid fixed needs --lazy-layers <layers> or --layer-file <file>/],
    ["lazy layers without fixed", ["--ids", "1", "--lazy-layers", "0"], /--lazy-layers and --layer-file are for --hybrid fixed/],
    ["a lazy layer the model lacks", ["--ids", "1", "--hybrid", "fixed", "--lazy-layers", "3"], /hybrid.lazyLayers has 3; layers are 0..2/],
    ["a window of 0", ["--ids", "1", "--hybrid", "auto", "--window", "0"], /hybrid.window must be/],
    ["a decimal comma", ["--ids", "1", "-t", "0,7"], /option '-t, --temperature <t>' argument '0,7' is invalid. not a number: 0,7/],
    ["a number with junk after it", ["--ids", "1", "--top-p", "0.9x"], /not a number: 0.9x/],
    ["a fraction where an integer goes", ["--ids", "1", "-n", "2.5"], /not an integer: 2.5/],
    ["a fraction with junk", ["--ids", "1", "--hybrid", "auto", "--full-layers", "0.5abc"], /not a number: 0.5abc/],
  ])("%s: exit 1 with what was wrong", (_, args, message) => {
    const out = run(...args);
    expect(out.status).toBe(1);
    expect(out.stderr).toMatch(message);
    expect(out.stdout).toBe("");
  });

  test("--dtype converts a checkpoint that mixes dtypes (refused without it, with the flag named)", async () => {
    // The fixture's head, alone in its shard, stored as f32 (its bf16 values exactly): the rest stays bf16.
    const dir = copyFixture("llama-tiny");
    try {
      const shard = path.join(dir, "model-00004-of-00004.safetensors");
      const bytes = fs.readFileSync(shard);
      const length = Number(bytes.readBigUInt64LE(0));
      const header = JSON.parse(bytes.subarray(8, 8 + length).toString());
      const bf16 = bytes.subarray(8 + length);
      const f32 = Buffer.alloc(bf16.length * 2);
      for (let i = 0; i < bf16.length / 2; i++) f32.writeUInt32LE((bf16.readUInt16LE(2 * i) << 16) >>> 0, 4 * i);
      header["lm_head.weight"] = { ...header["lm_head.weight"], dtype: "F32", data_offsets: [0, f32.length] };
      writeSafetensors(shard, header, f32);
      const ids = randomPrompt();
      const args = ["generate", "--model", dir, "--device", "cpu", "--ids", ids.join(","), "--no-tokenizer", "-n", "5"];
      const refused = spawnSync(process.execPath, [cli, ...args], { encoding: "utf8" });
      expect({ status: refused.status, stderr: refused.stderr }).toEqual({
        status: 1,
        stderr: expect.stringMatching(/weights mix dtypes \(BF16, F32\); pass a dtype \(loadModel's dtype option, the CLI's --dtype\)/),
      });
      const out = spawnSync(process.execPath, [cli, ...args, "--dtype", "bf16"], { encoding: "utf8" });
      expect(out.status).toBe(0);
      const bf16Model = await loadModel(modelDir, { device: "cpu", dtype: "bf16", kvCacheBytes: 4 * 2 ** 20 });
      try {
        const [want] = await bf16Model.generateBatch([ids], { maxNewTokens: 5 });
        expect(out.stdout.trim()).toBe(want.tokens.join(","));
      } finally {
        await bf16Model.dispose();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test.each(["stdout", "stderr"] as const)("a reader that closes %s early (| head) ends generate quietly with exit 0", async (closed) => {
    // --logprobs writes a JSON line a token to stderr, for programs to read.
    const args = [
      "generate",
      "--model",
      modelDir,
      "--device",
      "cpu",
      "--ids",
      randomPrompt().join(","),
      "-n",
      "4000",
      "--no-tokenizer",
      "--logprobs",
      "1",
    ];
    const child = spawn(process.execPath, [cli, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    const other = closed === "stdout" ? child.stderr : child.stdout;
    other.resume();
    // The first output, then the reading end goes away.
    await new Promise((resolve) => child[closed].once("data", resolve));
    child[closed].destroy();
    const status = await new Promise((resolve) => child.on("exit", (code, signal) => resolve(signal ?? code)));
    expect(status).toBe(0);
  });

  test("--logprobs writes one JSON line per generated token to stderr, as the library gives them", async () => {
    const ids = randomPrompt();
    const out = run("--ids", ids.join(","), "--no-tokenizer", "-n", "4", "--logprobs", "3");
    expect(out.status).toBe(0);
    const lines = out.stderr
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l));
    const [expected] = await model.generateBatch([ids], { maxNewTokens: 4, logprobs: 3 });
    expect(lines.map((l) => l.id)).toEqual(expected.tokens);
    lines.forEach((l, i) => {
      expect(l.logprob).toBeCloseTo(expected.logprobs![i].logprob, 5);
      expect(l.top_logprobs.map((t: { id: number }) => t.id)).toEqual(expected.logprobs![i].top_logprobs.map((t) => t.id));
    });
  });
});
