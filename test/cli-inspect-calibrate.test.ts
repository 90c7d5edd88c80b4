// `lighttransfer inspect` and `calibrate` in a child process (from dist/, which `npm test` builds
// first): a prompt file they cannot use or an output they cannot write is an error before any
// weight is read, and inspect draws no heatmap when no prompt has lazy ratios.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { XMLValidator } from "fast-xml-parser";
import { readLayerFile } from "../lib/api/calibrate";
import { fixtureRoot, readReference } from "./helpers/fixtures";
import { Random } from "./helpers/reference";

const rng = new Random();

const cli = path.join(__dirname, "..", "dist", "lib", "cli", "index.js");
const modelDir = path.join(fixtureRoot, "llama-tiny");
const out = fs.mkdtempSync(path.join(os.tmpdir(), "lt-cli-inspect-"));
afterAll(() => fs.rmSync(out, { recursive: true, force: true }));

// The model's config.json and nothing else: a check made only after loading would fail on the
// missing weights instead of saying what is wrong.
const configOnly = path.join(out, "config-only");
fs.mkdirSync(configOnly);
fs.copyFileSync(path.join(modelDir, "config.json"), path.join(configOnly, "config.json"));

const literal = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const run = (args: string[], cwd?: string) => spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", cwd });

/** One line on stderr, exit 1, and the error asked for rather than the missing weights'. */
function expectError(r: ReturnType<typeof run>, message: RegExp): void {
  expect([r.status, r.stderr]).toEqual([1, expect.stringMatching(/^lighttransfer: [^\n]*\n$/)]);
  expect(r.stderr).toMatch(message);
  expect(r.stderr).not.toMatch(/safetensors/);
}

const longPrompts = readReference("llama-tiny")
  .cases.filter((c) => c.ids.length > 16)
  .map((c) => c.prompt);
const promptFile = path.join(out, "prompts.txt");
fs.writeFileSync(promptFile, longPrompts.join("\n---\n"));
// Shape flags under which the reference prompts outgrow sink + window.
const ratioFlags = ["-d", "cpu", "--full-layers", "1", "--sink", "2", "--window", "8", "--last-queries", "4"];

/** The argument lists of calibrate and inspect with a prompt file and an output. */
const commands = {
  calibrate: (prompts: string, output: string) => ["calibrate", "-m", configOnly, "-f", prompts, "-o", output, "-d", "cpu"],
  inspect: (prompts: string, output: string) => ["inspect", "-m", configOnly, "-f", prompts, "--heatmap", output, "-d", "cpu"],
};
const outFlag = { calibrate: "-o", inspect: "--heatmap" };

describe(`seed ${rng.seed}`, () => {
  test.each(Object.keys(commands) as Array<keyof typeof commands>)(
    "%s: a prompt file that is missing or holds no prompts fails before the weights load",
    (command) => {
      const output = path.join(out, `out-${rng.int(0, 999)}`);
      const missing = path.join(out, `no-such-${rng.int(0, 999)}.txt`);
      expectError(run(commands[command](missing, output)), new RegExp(`--prompt-file ${literal(missing)}: cannot be read \\(ENOENT`));
      const empty = path.join(out, `empty-${rng.int(0, 999)}.txt`);
      fs.writeFileSync(empty, rng.pick(["", "\n", "---\n  \n---\n"]));
      expectError(run(commands[command](empty, output)), new RegExp(`--prompt-file ${literal(empty)}: no prompts \\(`));
      expect(fs.existsSync(output)).toBe(false);
    },
  );

  test.each(Object.keys(commands) as Array<keyof typeof commands>)(
    "%s: an output that cannot be written fails before the weights load",
    (command) => {
      const name = `x-${rng.int(0, 999)}`;
      const flag = outFlag[command];
      const aFile = path.join(out, `a-file-${rng.int(0, 999)}`);
      fs.writeFileSync(aFile, "");
      const noDir = path.join(out, `no-such-dir-${rng.int(0, 999)}`);
      const cases: Array<[string, string]> = [
        [path.join(noDir, name), `its directory ${noDir} does not exist`],
        [path.join(aFile, name), `${aFile} is not a directory`],
        [out, "it is a directory"],
      ];
      for (const [output, problem] of cases)
        expectError(run(commands[command](promptFile, output)), new RegExp(literal(`${flag} ${output}: cannot write there, ${problem};`)));
    },
  );

  test("calibrate writes its layer file where -o says, in the working directory or over a file that is there", () => {
    const cwd = fs.mkdtempSync(path.join(out, "cwd-"));
    const relative = `layers-${rng.int(0, 999)}.json`;
    const existing = path.join(out, `old-${rng.int(0, 999)}.json`);
    fs.writeFileSync(existing, "not a layer file");
    for (const [output, written] of [
      [relative, path.join(cwd, relative)],
      [existing, existing],
    ]) {
      const r = run(["calibrate", "-m", modelDir, "-f", promptFile, "-o", output, ...ratioFlags], cwd);
      expect([r.status, r.stderr.split("\n").filter((l) => l.startsWith("lighttransfer"))]).toEqual([0, []]);
      expect(r.stdout).toContain(`written to ${output}`);
      expect(readLayerFile(written)).toMatchObject({ layers: 3, prompts: longPrompts.length });
    }
  });

  test("inspect with no prompt longer than sink + window is an error and writes no heatmap; one such prompt of several is drawn", () => {
    const svg = path.join(out, `map-${rng.int(0, 999)}.svg`);
    // Longer than every prompt: no prompt gets ratios.
    const window = String(rng.int(60, 500));
    const prompts = path.join(out, "short.txt");
    fs.writeFileSync(prompts, rng.pick([[longPrompts[0]], longPrompts, ["short one"]]).join("\n---\n"));
    const r = run(["inspect", "-m", modelDir, "-f", prompts, "--heatmap", svg, "-d", "cpu", "--sink", "4", "--window", window]);
    expectError(r, new RegExp(`no prompt is longer than sink \\+ window \\(${Number(window) + 4} tokens\\), so none has lazy ratios`));
    expect(r.stdout).toMatch(/prompt 0: \d+ tokens, not longer than sink \+ window/);
    expect(fs.existsSync(svg)).toBe(false);

    fs.writeFileSync(prompts, ["short one", longPrompts[0]].join("\n---\n"));
    const mixed = run(["inspect", "-m", modelDir, "-f", prompts, "--heatmap", svg, ...ratioFlags]);
    expect([mixed.status, mixed.stdout]).toEqual([0, expect.stringContaining(`heatmap: ${svg}`)]);
    const drawn = fs.readFileSync(svg, "utf8");
    expect(XMLValidator.validate(drawn)).toBe(true);
    // Three layers of the second prompt; the first has none.
    expect(drawn.match(/<title>layer \d, prompt 1: /g)).toHaveLength(3);
    expect(drawn).not.toMatch(/prompt 0: /);
  });

  test.each([
    ["inspect", "--heatmap", "heatmap: "],
    ["calibrate", "-o", "written to "],
  ])("%s's --max-context bounds its prompts, and a prompt beyond it is refused naming that flag", (command, outFlag, written) => {
    const output = path.join(out, `bounded-${command}-${rng.int(0, 999)}.out`);
    const prompts = path.join(out, "bounded.txt");
    fs.writeFileSync(prompts, longPrompts[0]);
    const r = run([command, "-m", modelDir, "-f", prompts, outFlag, output, ...ratioFlags, "--max-context", "8"]);
    // The error names the prompt, and the option of what refused it.
    const refused =
      command === "inspect"
        ? `prompt 0 of ${literal(prompts)}: the prompt has \\d+ tokens: more than maxContext 8\\. Shorten the prompt or ask for a larger maxContext \\(a session's option; --max-context on the command line\\)`
        : "calibrate: prompts\\[0\\] has \\d+ tokens: more than maxContext 8\\. Shorten the prompt or ask for a larger maxContext \\(calibrate's option; --max-context on the command line\\)";
    expect([r.status, r.stderr]).toEqual([1, expect.stringMatching(new RegExp(refused))]);
    expect(fs.existsSync(output)).toBe(false);
    const fits = run([command, "-m", modelDir, "-f", prompts, outFlag, output, ...ratioFlags, "--max-context", "4096"]);
    expect([fits.status, fits.stdout, fits.stderr]).toEqual([
      0,
      expect.stringContaining(`${written}${output}`),
      expect.not.stringContaining("note:"),
    ]);
    // Past the positions the model was trained on: it runs, with a note saying so.
    const past = run([command, "-m", modelDir, "-f", prompts, outFlag, output, ...ratioFlags, "--max-context", "5000"]);
    expect([past.status, past.stderr]).toEqual([
      0,
      expect.stringContaining(
        "note: --max-context 5000 is beyond the model's max_position_embeddings (4096): the model was not trained on positions that far",
      ),
    ]);
  });

  test("calibrate says how many prompts it chose from, and how many were too short for any ratio", () => {
    const output = path.join(out, `some-${rng.int(0, 999)}.json`);
    const prompts = path.join(out, "some-short.txt");
    const short = rng.int(1, 3);
    const mixed = rng.shuffle([...longPrompts, ...Array.from({ length: short }, (_, i) => `short ${i}`)]);
    fs.writeFileSync(prompts, mixed.join("\n---\n"));
    const r = run(["calibrate", "-m", modelDir, "-f", prompts, "-o", output, ...ratioFlags]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(
      new RegExp(
        `\\(from ${longPrompts.length} of ${mixed.length} prompts; ${short} not longer than sink \\+ window \\(10 tokens\\)\\) written to `,
      ),
    );
    expect(readLayerFile(output).prompts).toBe(longPrompts.length);
  });
});
