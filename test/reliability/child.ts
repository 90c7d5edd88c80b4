// Runs a script in its own Node process, so a defect that kills the process (a segfault, an
// abort, V8's fatal out-of-memory) is reported as a failed test instead of ending jest.
import * as fs from "node:fs";
import * as path from "node:path";
import { addonCandidates } from "../../lib";
import { type ChildResult, runNode } from "../helpers/child";

/** The built addon the suite itself loads: children load the very same file. */
export function addonPath(): string {
  const found = addonCandidates().find((file) => fs.existsSync(file));
  if (!found) throw new Error("the native addon is not built: run `node scripts/build-native.js`");
  return found;
}

/**
 * Runs test/reliability/children/<script> with the addon's path as its first argument (and
 * `args` after it); a child reports its findings as JSON on its last line of stdout.
 */
export function runChild(script: string, args: string[] = [], nodeFlags: string[] = [], env: NodeJS.ProcessEnv = {}): ChildResult {
  return runNode([...nodeFlags, path.join(__dirname, "children", script), addonPath(), ...args], { env, timeoutMs: 300_000 });
}

/** The child's JSON report; fails with its exit status and stderr when it died or said nothing. */
export function reportOf<T>(result: ChildResult): T {
  const lines = result.stdout.trim().split("\n");
  if (result.status !== 0 || lines.length === 0 || lines[lines.length - 1] === "")
    throw new Error(
      `the child process ${result.signal ? `was killed by ${result.signal}` : `exited with status ${result.status}`}\n` +
        `stdout:\n${result.stdout.slice(-2000)}\nstderr:\n${result.stderr.slice(-4000)}`,
    );
  return JSON.parse(lines[lines.length - 1]) as T;
}

/** What children/async-indices.js reports when every async kernel read the indices it checked. */
export const asyncKernelsReadCheckedIndices = {
  appendKv: "same",
  decodeAttention: "same",
  cutToStreaming: "same",
  gatherKv: "same",
  ropeAppendKv: "same",
  embedding: "same",
  repetitionPenalty: "same",
};
