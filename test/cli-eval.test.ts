// `lighttransfer eval` in a child process (from dist/, which `npm test` builds first): the files it
// writes agree with each other and with the table it prints, and its flags reach the harness.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { XMLValidator } from "fast-xml-parser";
import { accuracyCells, accuracyVsContextSvg, accuracyVsFractionSvg, type EvalReport, markdownReport } from "../lib";
import { fixtureRoot } from "./helpers/fixtures";
import { editJson } from "./helpers/model-dir";
import { Random } from "./helpers/reference";

const rng = new Random();

const cli = path.join(__dirname, "..", "dist", "lib", "cli", "index.js");
const modelDir = path.join(fixtureRoot, "llama-tiny");
const out = fs.mkdtempSync(path.join(os.tmpdir(), "lt-cli-eval-"));
afterAll(() => fs.rmSync(out, { recursive: true, force: true }));

/** A copy of the model's directory without its weights: whatever reads them fails, naming a safetensors file. */
function withoutWeights(): string {
  const dir = fs.mkdtempSync(path.join(out, "no-weights-"));
  for (const f of fs.readdirSync(modelDir).filter((n) => n.endsWith(".json") && !n.includes("safetensors")))
    fs.copyFileSync(path.join(modelDir, f), path.join(dir, f));
  return dir;
}

/**
 * An eval of `model` with `flags` refused before any weight is read: a non-zero exit with
 * `message`, no safetensors file named, and nothing left at `results` (the output directory is
 * made only once the settings pass).
 */
function expectRefusedBeforeWeights(model: string, results: string, flags: string[], message: RegExp): void {
  const r = spawnSync(process.execPath, [cli, "eval", "--model", model, "--device", "cpu", "-o", results, ...flags], { encoding: "utf8" });
  expect(r.status).not.toBe(0);
  expect(r.stderr).toMatch(message);
  expect(r.stderr).not.toMatch(/safetensors/);
  expect(fs.existsSync(results)).toBe(false);
}

describe(`seed ${rng.seed}`, () => {
  test("an output path that cannot be a directory fails before the model is loaded", () => {
    const file = path.join(out, "a-file");
    fs.writeFileSync(file, "");
    const noWeights = withoutWeights();
    for (const results of [file, path.join(file, "results")]) {
      const r = spawnSync(process.execPath, [cli, "eval", "--model", noWeights, "-c", "420", "--window", "64", "-o", results], {
        encoding: "utf8",
      });
      expect(r.status).not.toBe(0);
      expect(r.stderr).toContain(
        `-o ${results}: cannot make this directory for the results (a file is in the way); give a directory's path`,
      );
      expect(r.stderr).not.toMatch(/safetensors/);
    }
  });

  test("settings the tokenizer decides are refused before any weight is read", () => {
    const noWeights = withoutWeights();
    editJson(noWeights, "tokenizer_config.json", (c) => ({ ...c, chat_template: undefined }));
    const results = path.join(out, `refused-${rng.int(0, 1e6)}`);
    const cases: [string[], RegExp][] = [
      [
        ["-c", "60", "--window", "3", "--tasks", "passkey"],
        /context 60 is too short for passkey: its instructions, question and needles take \d+ tokens/,
      ],
      [
        ["-c", "420", "--window", "64", "--chat", "on"],
        /eval: chat is on, but this model has no chat template .*: set chat to false \(--chat off on the command line\)/,
      ],
    ];
    for (const [flags, message] of cases) expectRefusedBeforeWeights(noWeights, results, flags, message);
  });

  test("eval writes eval.json, eval.md and both plots, consistent with each other and with what it prints", () => {
    const randomModes = rng.int(1, 3);
    const extraTokens = rng.int(0, 16);
    const r = spawnSync(
      process.execPath,
      [
        cli,
        "eval",
        "--model",
        modelDir,
        "--device",
        "cpu",
        "-c",
        "420",
        "--tasks",
        // A space after the comma, as people type lists.
        "passkey, niah-multivalue",
        "--depths",
        "0.5",
        "--seeds",
        "1",
        "--full-layers",
        "0.34",
        "--random-seeds",
        String(randomModes),
        "--window",
        "64",
        "--no-perplexity",
        "--extra-tokens",
        String(extraTokens),
        "-o",
        out,
      ],
      { encoding: "utf8" },
    );
    expect([r.status, r.stderr.slice(-500)]).toEqual([0, expect.stringContaining("written to")]);
    // stderr is no terminal here: the progress still comes, as lines (the last one at the end).
    expect(r.stderr).toMatch(/evaluating =+ (\d+)\/\1 \|/);
    const report: EvalReport = JSON.parse(fs.readFileSync(path.join(out, "eval.json"), "utf8"));
    expect(report.config).toMatchObject({
      contexts: [420],
      tasks: ["passkey", "niah-multivalue"],
      depths: [0.5],
      seeds: [0],
      window: 64,
      perplexity: false,
      extraTokens,
    });
    expect(report.modes.map((m) => m.name)).toEqual([
      "full",
      "auto 34%",
      ...Array.from({ length: randomModes }, (_, i) => `random 50% #${i}`),
      "streaming-all",
    ]);
    expect(report.samples).toHaveLength(report.modes.length * 2);
    expect(report.perplexity).toEqual([]);
    expect(report.accuracy).toEqual(accuracyCells(report.samples));
    const table = fs.readFileSync(path.join(out, "eval.md"), "utf8");
    expect(table).toBe(markdownReport(report));
    expect(r.stdout).toBe(table);
    for (const [file, draw] of [
      ["accuracy-vs-context.svg", accuracyVsContextSvg],
      ["accuracy-vs-fraction.svg", accuracyVsFractionSvg],
    ] as const) {
      const svg = fs.readFileSync(path.join(out, file), "utf8");
      expect(XMLValidator.validate(svg)).toBe(true);
      expect(svg).toBe(draw(report));
    }
  }, 120_000);

  test("--help and the README give bench/quality/config.json as the checkout's, not the package's: the defaults are built in", () => {
    const root = path.join(__dirname, "..");
    const packaged: string[] = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")).files;
    expect(packaged.filter((f) => f.startsWith("bench"))).toEqual([]);
    const help = spawnSync(process.execPath, [cli, "eval", "--help"], { encoding: "utf8" }).stdout.replace(/\s+/g, " ");
    expect(help).toMatch(
      /--config <file> evaluation settings \(JSON\) over the built-in defaults; .*bench\/quality\/config\.json of the repository checkout, not of the npm package/,
    );
    // Every paragraph naming the file says where it is; no command an installed package runs names it.
    const readme = fs.readFileSync(path.join(root, "README.md"), "utf8");
    const naming = readme.split(/\n\s*\n/).filter((p) => p.includes("bench/quality/config.json"));
    expect(naming.length).toBeGreaterThan(0);
    for (const paragraph of naming) {
      expect(paragraph).not.toMatch(/lighttransfer eval .*--config bench\/quality\/config\.json/);
      expect(paragraph).toMatch(/built in.*repository checkout \(not in the npm package\)/s);
    }
  });

  test("bad flags are errors before the model loads", () => {
    const r = spawnSync(process.execPath, [cli, "eval", "--model", modelDir, "-c", "4096,x"], { encoding: "utf8" });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/not a comma-separated list of numbers: 4096,x/);
    // A count below its least is refused, not read as none (no random modes at all, say).
    // And one past the most is refused before it builds a list that long.
    for (const [flag, value, least] of [
      ["--random-seeds", String(-rng.int(1, 9)), 0],
      ["--seeds", String(-rng.int(0, 9)), 1],
      ["--seeds", String(10_001 + rng.int(0, 1e9)), 1],
      ["--random-seeds", String(10_001 + rng.int(0, 1e9)), 0],
    ] as const) {
      const bad = spawnSync(process.execPath, [cli, "eval", "--model", modelDir, flag, value], { encoding: "utf8" });
      expect(bad.status).not.toBe(0);
      expect(bad.stderr).toContain(`must be an integer in [${least}, 10000], got ${value}`);
    }
  });

  test("settings the model cannot run are refused from config.json alone, before any weight is read", () => {
    // A directory with the model's config.json and nothing else: a setting checked only after
    // loading would fail on the missing weights instead.
    const configOnly = fs.mkdtempSync(path.join(out, "config-only-"));
    fs.copyFileSync(path.join(modelDir, "config.json"), path.join(configOnly, "config.json"));
    const maxPositions = JSON.parse(fs.readFileSync(path.join(modelDir, "config.json"), "utf8")).max_position_embeddings;
    const cases: [string[], RegExp][] = [
      [["-c", "420", "--tasks", `passkey,not-a-task-${rng.int(0, 99)}`], /eval: tasks must be .*; "not-a-task-\d+" is not one/],
      [
        ["-c", "420", "--depths", `0.5,${1 + rng.int(1, 9) / 10}`],
        /eval: depths must be a non-empty list of depths in \[0, 1\]; 1\.\d is not one/,
      ],
      [["-c", `420,${maxPositions + 1}`], new RegExp(`token counts in \\[1, ${maxPositions}\\] .*; ${maxPositions + 1} is not one`)],
      [["-c", "420", "--full-layers", "0.5,0.501"], /two modes are both named/],
    ];
    const results = path.join(out, `refused-${rng.int(0, 1e6)}`);
    for (const [flags, message] of cases) expectRefusedBeforeWeights(configOnly, results, flags, message);
  });

  test("--kv-memory sizes the page pool: two pages are refused, three cannot hold a prompt", () => {
    const pageBytes = 16 * 2 * 1 * 64 * 4; // 16-token pages of one KV head of dimension 64, K and V, in f32
    const run = (pages: number) =>
      spawnSync(
        process.execPath,
        [cli, "eval", "--model", modelDir, "--device", "cpu", "-c", "420", "--tasks", "passkey", "--depths", "0.5", "--seeds", "1"]
          .concat(["--random-seeds", "0", "--full-layers", "0.34", "--window", "64", "--no-perplexity", "--no-streaming-all"])
          .concat(["--kv-memory", String(pages * pageBytes), "-o", out]),
        { encoding: "utf8" },
      );
    for (const pages of [2, 3]) {
      const r = run(pages);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(
        pages === 2
          ? new RegExp(
              `kvCacheBytes ${2 * pageBytes} holds 2 KV page\\(s\\) of ${pageBytes} bytes \\(16 tokens of one layer in f32\\), and a sequence needs a page in each of the model's 3 layers.*\\(on the command line, the pool's size is --kv-memory\\)$`,
              "m",
            )
          : /the KV page pool is too small: prompt 0 \(\d+ tokens\) needs \d+ pages while it is prefilled, and the pool holds 3 in all.*\(on the command line, the pool's size is --kv-memory\)$/m,
      );
    }
    expect(spawnSync(process.execPath, [cli, "eval", "--model", modelDir, "--kv-memory", "lots"], { encoding: "utf8" }).stderr).toMatch(
      /argument 'lots' is invalid. not a size: lots/,
    );
  }, 60_000);
});
