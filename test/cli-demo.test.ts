// `npm run demo`'s flags (dist/bench/demo.js, which `npm test` builds first): a flag that is not a
// number in range is one line and exit 1 before the model loads; good ones reach the sample.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { brownCorpus, makeSample, Tokenizer } from "../lib";
import { Random } from "./helpers/reference";

const rng = new Random();

const demo = path.join(__dirname, "..", "dist", "bench", "demo.js");
const demoModel = path.join(__dirname, "..", "models", "demo");
const run = (...args: string[]) => spawnSync(process.execPath, [demo, ...args], { encoding: "utf8" });

/** The one line a refused run prints, and nothing on stdout. */
function expectRefused(r: ReturnType<typeof run>, message: RegExp): void {
  expect([r.status, r.stdout, r.stderr]).toEqual([1, "", expect.stringMatching(/^lighttransfer demo: [^\n]*\n$/)]);
  expect(r.stderr).toMatch(message);
}

describe(`seed ${rng.seed}`, () => {
  test("a flag that is not a whole number in range is refused with the flag and its text", () => {
    const word = `x${rng.int(0, 99)}`;
    const above = 1 + rng.int(1, 9) / 10;
    const fraction = `${rng.int(1, 99)}.5`;
    const cases: Array<[string[], RegExp]> = [
      [["--context", word, "--seed", "1"], new RegExp(`--context must be a positive whole number of tokens, got "${word}"`)],
      [["--context", fraction], new RegExp(`--context must be .*, got "${fraction}"`)],
      [["--context", "0"], /--context must be a positive whole number of tokens, got "0"/],
      [["--context", `${rng.int(500, 900)}abc`], /--context must be .*, got "\d+abc"/],
      [["--depth", String(above)], new RegExp(`--depth must be a number in \\[0, 1\\] .*, got "${above}"`)],
      [[`--depth=-0.${rng.int(1, 9)}`], /--depth must be a number in \[0, 1\] .*, got "-0\.\d"/],
      [["--depth", ""], /--depth must be a number in \[0, 1\] .*, got ""/],
      [["--seed", fraction], new RegExp(`--seed must be an integer, got "${fraction}"`)],
      [["--seed", "NaN"], /--seed must be an integer, got "NaN"/],
      [["--seed"], /'--seed <value>' argument missing; usage: npm run demo -- \[--seed N\]/],
      [["--contxt", "4096"], /Unknown option '--contxt'; usage: npm run demo/],
      [["4096"], /Unexpected argument '4096'.*; usage: npm run demo/],
    ];
    for (const [args, message] of cases) expectRefused(run(...args), message);
  });

  test("good flags reach the sample: the demo's is makeSample's for that seed, context and depth", () => {
    const seed = rng.int(-999, 999_999);
    const context = rng.int(400, 700);
    const depth = rng.int(0, 10) / 10;
    const r = run(`--seed=${seed}`, "--context", String(context), "--depth", String(depth));
    expect([r.status, r.stderr]).toEqual([0, ""]);
    const { max_position_embeddings } = JSON.parse(fs.readFileSync(path.join(demoModel, "config.json"), "utf8"));
    const sample = makeSample(
      Tokenizer.fromDirectory(demoModel),
      brownCorpus(),
      { task: "passkey", context, depth, seed },
      // The demo's slack for the answer's end and a wrong answer's run-on.
      { chat: false, maxPositions: max_position_embeddings, extraTokens: 4 },
    );
    const needle = sample.needles.find((n) => n.answering)!;
    expect(r.stdout).toContain(
      `passkey (seed ${seed}): ${sample.prompt.length}-token prompt of Brown-corpus text; the needle "${needle.text}" starts at token ${needle.token} (depth ${needle.depthReached.toFixed(2)})`,
    );
    expect(r.stdout).toContain(`expected answer: ${sample.answer};`);
  }, 60_000);

  test("a context the demo model cannot take is one line too, after the model loads", () => {
    expectRefused(run("--context", String(rng.int(1, 60))), /context \d+ is too short for passkey: .* Ask for a longer context/);
    const r = run("--context", String(10 ** 6 + rng.int(0, 999)));
    expect([r.status, r.stderr]).toEqual([
      1,
      expect.stringMatching(/^lighttransfer demo: context \d+ is beyond the model's max_position_embeddings \(\d+\)[^\n]*\n$/),
    ]);
  }, 60_000);
});
