// The parent side of the fuzz suite: generates cases with fast-check from a fixed seed, runs
// them in batches in child processes (so a crash or a hang fails one case instead of killing
// the test runner), and pinpoints the case that killed a child by running it again alone.
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import fc from "fast-check";
import { describeCase, encodeCase } from "./codec";

/**
 * Seed and cases per property: a fixed seed and `defaultRuns` in CI; `npm run fuzz -- --runs N
 * --seed S` (scripts/fuzz.js) sets both through the environment for a longer run.
 */
export function fuzzSettings(defaultRuns: number): { seed: number; runs: number } {
  const seed = Number(process.env.LIGHTTRANSFER_FUZZ_SEED ?? 20261130);
  const runs = Number(process.env.LIGHTTRANSFER_FUZZ_RUNS ?? defaultRuns);
  if (!Number.isSafeInteger(seed) || !Number.isSafeInteger(runs) || runs < 1)
    throw new Error("LIGHTTRANSFER_FUZZ_SEED must be an integer and LIGHTTRANSFER_FUZZ_RUNS a count >= 1");
  return { seed, runs };
}

/** A jest timeout for a property of `runs` cases that take up to `caseMs` each. */
export function timeoutFor(runs: number, caseMs: number): number {
  return Math.max(600000, runs * caseMs);
}

/** `runs` cases drawn from `arbitrary` with `seed`: the same list on every machine. */
export function drawCases<T>(arbitrary: fc.Arbitrary<T>, seed: number, runs: number): T[] {
  return fc.sample(arbitrary, { seed, numRuns: runs });
}

export interface CaseFailure {
  index: number;
  input: unknown;
  /** What went wrong: the property's message, or how the child died. */
  message: string;
}

export interface RunOptions {
  /** Cases per child process (fewer children start; a crash costs a re-run of one case). */
  batchSize: number;
  /** A case that reports nothing for this long is a hang. */
  caseTimeoutMs: number;
  /** Extra environment of the children. */
  env?: Record<string, string>;
}

interface ChildOutcome {
  results: Map<number, { ok: boolean; message: string }>;
  /** The case that had started but not finished when the child ended, if any. */
  running?: number;
  death?: string;
}

const childScript = path.join(__dirname, "child.js");

// glibc serves every block of 64 KiB or more with its own mmap and unmaps it on free, so a
// kernel that touches a freed tensor faults at once instead of corrupting memory quietly.
const childEnv = { MALLOC_MMAP_THRESHOLD_: "65536" };

function runChild(modulePath: string, batch: Array<{ index: number; input: unknown }>, o: RunOptions): Promise<ChildOutcome> {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "lt-fuzz-batch-")), "batch.json");
  fs.writeFileSync(file, encodeCase(batch));
  return new Promise((resolve) => {
    // A small JS heap, so that a case that allocates without bound dies in seconds, not minutes.
    const child = spawn(process.execPath, ["--max-old-space-size=1024", childScript, modulePath, file], {
      env: { ...process.env, ...childEnv, ...o.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const outcome: ChildOutcome = { results: new Map() };
    let stdout = "",
      stderr = "",
      hung = false;
    let timer = setTimeout(onHang, o.caseTimeoutMs);
    function onHang() {
      hung = true;
      child.kill("SIGKILL");
    }
    child.stdout.on("data", (data: Buffer) => {
      stdout += data.toString();
      for (let newline = stdout.indexOf("\n"); newline >= 0; newline = stdout.indexOf("\n")) {
        const line = stdout.slice(0, newline);
        stdout = stdout.slice(newline + 1);
        let record: { start?: number; done?: number; ok?: boolean; message?: string };
        try {
          record = JSON.parse(line);
        } catch {
          continue; // something in the library printed to stdout
        }
        clearTimeout(timer);
        timer = setTimeout(onHang, o.caseTimeoutMs);
        if (record.start !== undefined) outcome.running = record.start;
        if (record.done !== undefined) {
          outcome.results.set(record.done, { ok: record.ok === true, message: record.message ?? "" });
          outcome.running = undefined;
        }
      }
    });
    child.stderr.on("data", (data: Buffer) => {
      stderr = (stderr + data.toString()).slice(-4000);
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      fs.rmSync(path.dirname(file), { recursive: true, force: true });
      const finished = outcome.results.size === batch.length;
      if (hung) outcome.death = `hang: no result within ${o.caseTimeoutMs} ms (killed)`;
      else if (signal) outcome.death = `the process died by ${signal}`;
      else if (code !== 0 || !finished) outcome.death = `the process exited with code ${code}`;
      if (outcome.death && stderr.trim()) outcome.death += `\n--- stderr (tail) ---\n${stderr.trim()}`;
      resolve(outcome);
    });
  });
}

/**
 * Runs every case through `runCase` of the module at `modulePath` in child processes and
 * returns the cases that failed: the property did not hold, the child crashed on the case, or
 * it hung. A child that dies stops its batch there; its running case is run again alone to
 * tell a crash of its own from one that needed the cases before it, and the batch goes on in
 * a fresh child.
 */
export async function runCases(modulePath: string, inputs: unknown[], o: RunOptions): Promise<CaseFailure[]> {
  const failures: CaseFailure[] = [];
  const pending = inputs.map((input, index) => ({ index, input }));
  while (pending.length) {
    const batch = pending.splice(0, o.batchSize);
    const outcome = await runChild(modulePath, batch, o);
    for (const [index, r] of outcome.results) if (!r.ok) failures.push({ index, input: inputs[index], message: r.message });
    if (!outcome.death) continue;
    const unfinished = batch.filter((c) => !outcome.results.has(c.index));
    if (outcome.running === undefined) {
      // Died between cases (e.g. a finalizer or a stray promise after the last one finished).
      const last = [...outcome.results.keys()].pop();
      failures.push({
        index: last ?? -1,
        input: last === undefined ? undefined : inputs[last],
        message: `after this case: ${outcome.death}`,
      });
    } else {
      // Alone, up to three times: a crash that depends on timing (a race with a worker thread)
      // may need more than one try. A hang is not run again: its case is known and waiting costs.
      let alone = outcome.death.startsWith("hang")
        ? outcome
        : await runChild(modulePath, [{ index: outcome.running, input: inputs[outcome.running] }], o);
      for (let tries = 1; tries < 3 && !alone.death; tries++)
        alone = await runChild(modulePath, [{ index: outcome.running, input: inputs[outcome.running] }], o);
      const started = batch.filter((c) => outcome.results.has(c.index)).map((c) => c.index);
      failures.push({
        index: outcome.running,
        input: inputs[outcome.running],
        message: alone.death
          ? alone.death.startsWith("hang")
            ? alone.death
            : `crash: ${alone.death}`
          : `crash only after earlier cases of its batch (${started.length} ran before it in that child, the last ones ${started.slice(-5).join(", ")}); ` +
            `alone it ${alone.results.get(outcome.running)?.ok ? "passes (3 tries)" : `fails: ${alone.results.get(outcome.running)?.message}`}: ${outcome.death}`,
      });
    }
    pending.unshift(...unfinished.filter((c) => c.index !== outcome.running));
  }
  return failures;
}

/**
 * A jest failure message listing the failed cases and how to replay them: with the seed and
 * run count of a drawn property, or (seed undefined) by running the enumerated test again.
 */
export function report(suite: string, seed: number | undefined, runs: number, failures: CaseFailure[]): string {
  const shown = 40;
  const lines = failures
    .slice(0, shown)
    .map((f) => `case ${f.index}: ${describeCase(f.input)}\n  ${f.message.split("\n").slice(0, 14).join("\n  ")}`);
  if (failures.length > shown)
    lines.push(
      `… and ${failures.length - shown} more (cases ${failures
        .slice(shown)
        .map((f) => f.index)
        .join(", ")})`,
    );
  const replay =
    seed === undefined ? "enumerated cases, the same on every run" : `seed ${seed}; replay: npm run fuzz -- --seed ${seed} --runs ${runs}`;
  return `${failures.length} of ${runs} ${suite} cases failed (${replay}):\n\n${lines.join("\n\n")}`;
}

export interface SuiteOptions extends RunOptions {
  /** The module (under test/fuzz/cases) whose runCase the children run. */
  modulePath: string;
}

/**
 * Registers a jest test of `defaultRuns` cases drawn from `arbitrary` with the fuzz seed plus
 * `seedOffset` (so the properties of one seed draw apart), failing with the report of `suite`.
 */
export function propertyTest<T>(
  title: string,
  suite: string,
  arbitrary: fc.Arbitrary<T>,
  seedOffset: number,
  defaultRuns: number,
  o: SuiteOptions,
): void {
  const { seed, runs } = fuzzSettings(defaultRuns);
  test(
    title,
    async () => {
      const failures = await runCases(o.modulePath, drawCases(arbitrary, seed + seedOffset, runs), o);
      if (failures.length) throw new Error(report(suite, seed, runs, failures));
    },
    timeoutFor(runs, 1000),
  );
}

/** Registers a jest test of the cases `enumerate` lists, the same on every run. */
export function enumeratedTest(title: string, suite: string, enumerate: () => unknown[], o: SuiteOptions, timeoutMs: number): void {
  test(
    title,
    async () => {
      const cases = enumerate();
      const failures = await runCases(o.modulePath, cases, o);
      if (failures.length) throw new Error(report(suite, undefined, cases.length, failures));
    },
    timeoutMs,
  );
}
