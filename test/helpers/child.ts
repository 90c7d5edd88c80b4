// Runs a script in a child node process, so a case that can kill the process (a heap out-of-memory
// abort, a native crash) is a failed test rather than the death of the test runner. The script
// requires the library's TypeScript sources as `require(process.env.LIGHTTRANSFER_ROOT + "/lib")`.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

export interface ChildResult {
  /** Exit code, or null when a signal ended the process. */
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const root = path.join(__dirname, "..", "..");

/** Runs `node` with `args` in the repository root, `env` added to this process's environment. */
export function runNode(args: string[], { env = {} as NodeJS.ProcessEnv, timeoutMs = 120_000 } = {}): ChildResult {
  const r = spawnSync(process.execPath, args, {
    cwd: root,
    env: { ...process.env, ...env },
    encoding: "utf8",
    timeout: timeoutMs,
    maxBuffer: 16 << 20,
  });
  return { status: r.status, signal: r.signal, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

/**
 * Runs `source` (CommonJS JavaScript) in a fresh node with a small heap, so a runaway allocation
 * fails fast instead of swapping; `nodeArgs` go to node before the script, `env` is added to its environment.
 * @example const r = runChild(`require(process.env.LIGHTTRANSFER_ROOT + "/lib"); console.log("ok")`);
 */
export function runChild(
  source: string,
  { heapMiB = 512, timeoutMs = 120_000, nodeArgs = [] as string[], env = {} as NodeJS.ProcessEnv } = {},
): ChildResult {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lt-child-"));
  const script = path.join(dir, "script.js");
  fs.writeFileSync(script, source);
  try {
    return runNode([`--max-old-space-size=${heapMiB}`, ...nodeArgs, "-r", path.join(__dirname, "register-ts.js"), script], {
      env: { ...env, LIGHTTRANSFER_ROOT: root },
      timeoutMs,
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
