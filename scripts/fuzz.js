#!/usr/bin/env node
// Runs the fuzz suite (test/fuzz) with more cases or another seed than CI does:
//   npm run fuzz -- --runs 10000 --seed 7
//   npm run fuzz -- --runs 2000 -t kernels        (extra arguments go to jest)
// --runs is the number of cases of each property; the default is each property's CI size.

const { spawnSync } = require("node:child_process");
const path = require("node:path");
const { Command } = require("commander");

const program = new Command()
  .name("npm run fuzz --")
  .option("--runs <count>", "cases per property", (v) => parsePositive(v, "--runs"))
  .option("--seed <seed>", "seed of the case generator", (v) => parseInteger(v, "--seed"))
  .allowUnknownOption()
  .allowExcessArguments()
  .parse(process.argv);

function parseInteger(value, flag) {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new Error(`${flag} must be an integer, got ${value}`);
  return n;
}

function parsePositive(value, flag) {
  const n = parseInteger(value, flag);
  if (n < 1) throw new Error(`${flag} must be at least 1, got ${value}`);
  return n;
}

const { runs, seed } = program.opts();
const env = { ...process.env };
if (runs !== undefined) env.LIGHTTRANSFER_FUZZ_RUNS = String(runs);
if (seed !== undefined) env.LIGHTTRANSFER_FUZZ_SEED = String(seed);
const jest = path.join(__dirname, "..", "node_modules", "jest", "bin", "jest.js");
const result = spawnSync(process.execPath, [jest, "--selectProjects", "cpu", "--testPathPattern", "test/fuzz/", ...program.args], {
  stdio: "inherit",
  env,
  cwd: path.join(__dirname, ".."),
});
process.exit(result.status ?? 1);
