// The property every fuzz case checks, in the child process: a call either succeeds with a
// correct result or throws an Error whose message says what was wrong — never a message that
// only says that the library itself tripped over the input.
import * as v8 from "node:v8";
import * as vm from "node:vm";
import { memoryUsage } from "../../../lib";

v8.setFlagsFromString("--expose-gc");
const gc = vm.runInNewContext("gc") as () => void;

/** A property that did not hold; the message says which and with what. */
export class PropertyFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PropertyFailure";
  }
}

export function fail(message: string): never {
  throw new PropertyFailure(message);
}

// Messages of errors the JavaScript engine or Node raise when code uses a value it never
// checked: they name neither the argument nor the fix.
const internalMessages = [
  /^Invalid argument$/,
  /Cannot read propert(y|ies) of (undefined|null)/,
  /Cannot (set|destructure) propert/,
  /is not a function/,
  /is not iterable/,
  /is not a constructor/,
  /Cannot convert (undefined|null|a BigInt|a Symbol|object)/,
  /Cannot mix BigInt/,
  /Maximum call stack size exceeded/,
  /Invalid (typed )?array length/,
  /Array buffer allocation failed/,
  /^\[object Object\]$/,
];

/** Whether `err` is an Error with a message a user can act on. */
export function usefulnessProblem(err: unknown): string | undefined {
  if (!(err instanceof Error)) return `a non-Error was thrown: ${typeof err} ${String(err).slice(0, 200)}`;
  const message = typeof err.message === "string" ? err.message.trim() : "";
  if (message.length < 12) return `the error message is empty or too short to help: ${err.name}: "${message}"`;
  const internal = internalMessages.find((re) => re.test(message));
  if (internal) return `the error comes from an unchecked value, not from validation: ${err.name}: ${message.slice(0, 300)}`;
  return undefined;
}

export function expectUsefulError(err: unknown, context: string): void {
  const problem = usefulnessProblem(err);
  if (problem) fail(`${context}: ${problem}`);
}

/** Runs `fn`, returning what it returned or threw (a rejection counts as a throw). */
export async function attempt<T>(fn: () => T | Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await fn() };
  } catch (error) {
    return { ok: false, error };
  }
}

/**
 * Host bytes of live tensors once garbage is collected and its finalizers have run (a collected
 * view() frees its tensor's memory only in its finalizer): what is left is held by something
 * reachable.
 */
export async function liveCpuBytes(): Promise<number> {
  for (let round = 0; round < 2; round++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  return memoryUsage().cpu;
}

/** Fails unless the library's accounting is back at `baseline` (everything the case made was freed). */
export async function expectMemoryBack(baseline: number, context: string): Promise<void> {
  const now = await liveCpuBytes();
  if (now !== baseline)
    fail(
      `${context}: live tensor bytes went from ${baseline} to ${now} (${now - baseline > 0 ? "+" : ""}${now - baseline}): something was not freed`,
    );
}

export function sameBytes(a: ArrayBufferView, b: ArrayBufferView): boolean {
  if (a.byteLength !== b.byteLength) return false;
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength),
    y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}
