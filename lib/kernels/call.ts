// Shared plumbing of the kernel wrappers: allocate outputs, call the addon, and on failure
// free what this call allocated (never the caller's tensors).
import { optionalSignal, optionsObject, rejectUnknownOptions } from "../common/validate";
import { addon, type NativeCancelToken, type NativeOpArgs, type NativeTensorHandle } from "../runtime/native";
import { Tensor } from "../runtime/tensor";

export interface AsyncKernelOptions {
  /**
   * Rejects with the signal's reason if aborted before the kernel starts (while the call waits
   * for a thread of libuv's pool, too), and the outputs are left as they were; a kernel that has
   * started runs to its end.
   */
  signal?: AbortSignal;
}

/** Outputs the caller passed in are kept; outputs made here are disposed if the call fails. */
export class Outputs {
  private readonly made: Tensor[] = [];

  take(given: Tensor | undefined, make: () => Tensor): Tensor {
    if (given !== undefined) return given;
    const t = make();
    this.made.push(t);
    return t;
  }

  disposeMade(): void {
    for (const t of this.made) t.dispose();
  }
}

/** Runs an async call, cancelled (see AsyncKernelOptions.signal) if the signal aborts before it starts. */
async function runAsync<R>(
  outputs: Outputs,
  call: (cancel: NativeCancelToken | undefined) => Promise<void>,
  result: R,
  signal: AbortSignal | undefined,
): Promise<R> {
  let forget: (() => void) | undefined;
  try {
    signal?.throwIfAborted();
    const token = signal && addon().cancelToken();
    if (signal && token) forget = cancelOnAbort(signal, token);
    await call(token);
  } catch (err) {
    outputs.disposeMade();
    // The addon's errors come from Node's own realm, which `instanceof Error` of another (a test
    // runner's sandbox) does not recognise: the message is what tells.
    if (signal?.aborted && (err as { message?: unknown } | undefined)?.message === cancelledBeforeRun) throw signal.reason;
    throw err;
  } finally {
    forget?.();
  }
  return result;
}

/** The addon's message for a call its token kept from running (native/addon/cancel.h). */
const cancelledBeforeRun = "lighttransfer: the call was cancelled before it ran";

/** The tokens of the calls in flight on each signal; one abort listener a signal, however many calls share it. */
const pendingTokens = new WeakMap<AbortSignal, Set<NativeCancelToken>>();

/** Cancels `token` when `signal` aborts; returns what forgets it once its call has settled. */
function cancelOnAbort(signal: AbortSignal, token: NativeCancelToken): () => void {
  let tokens = pendingTokens.get(signal);
  if (!tokens) {
    const created = new Set<NativeCancelToken>();
    pendingTokens.set(signal, created);
    signal.addEventListener(
      "abort",
      () => {
        for (const t of created) addon().cancel(t);
        created.clear();
      },
      { once: true },
    );
    tokens = created;
  }
  tokens.add(token);
  const held = tokens;
  return () => held.delete(token);
}

/** A kernel call made ready by its wrapper's checks: the op, its native arguments, its outputs and what it returns. */
export interface PreparedOp<Op extends keyof NativeOpArgs, R> {
  op: Op;
  args: NativeOpArgs[Op];
  outputs: Outputs;
  result: R;
}

/** Runs a prepared op here; outputs made for it are disposed if it fails. */
export function runOp<Op extends keyof NativeOpArgs, R>({ op, args, outputs, result }: PreparedOp<Op, R>): R {
  const run = addon()[op] as (args: NativeOpArgs[Op]) => void;
  try {
    run(args);
  } catch (err) {
    outputs.disposeMade();
    throw err;
  }
  return result;
}

/**
 * Prepares an op and runs it on libuv's pool: a bad argument rejects the Promise rather than
 * throwing, as it does from every `...Async` kernel.
 */
export async function runOpAsync<Op extends keyof NativeOpArgs, R>(
  prepare: () => PreparedOp<Op, R>,
  options: AsyncKernelOptions,
): Promise<R> {
  const { op, args, outputs, result } = prepare();
  let signal: AbortSignal | undefined;
  try {
    const o = optionsObject(options, `${op}Async: options`);
    rejectUnknownOptions(o, ["signal"], `${op}Async: options`);
    signal = optionalSignal(o.signal, `${op}Async: signal`);
  } catch (err) {
    outputs.disposeMade();
    throw err;
  }
  const run = addon()[`${op}Async`] as (args: NativeOpArgs[Op], cancel: NativeCancelToken | undefined) => Promise<void>;
  return runAsync(outputs, (cancel) => run(args, cancel), result, signal);
}

/** The native form of a tensor argument (undefined stays undefined). */
export function handleOf(t: Tensor | undefined): NativeTensorHandle | undefined {
  return t?.handle;
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return `an object (${Object.prototype.toString.call(value)})`;
  if (typeof value === "string") return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
  return `${typeof value} ${String(value)}`;
}

/**
 * A kernel's options, read once into a plain object: every getter runs here, before any value is
 * checked or used, so what the wrapper checks is what the addon gets.
 */
export function readOptions<T extends object>(kernel: string, options: T, keys: readonly (keyof T & string)[], name = "options"): T {
  if (typeof options !== "object" || options === null || Array.isArray(options))
    throw new TypeError(`${kernel}: ${name} must be an object ({ ${keys.join(", ")} }), got ${describe(options)}`);
  const plain = {} as T;
  for (const key of keys) plain[key] = options[key];
  return plain;
}

/** A nested options object (such as `streaming`), read once; undefined stays undefined. */
export function readNested<T extends object>(
  kernel: string,
  name: string,
  value: T | undefined,
  keys: readonly (keyof T & string)[],
): T | undefined {
  if (value === undefined) return undefined;
  return readOptions(kernel, value, keys, name);
}

export function requireTensor(name: string, value: unknown): Tensor {
  if (!(value instanceof Tensor)) throw new TypeError(`${name} must be a Tensor, got ${describe(value)}`);
  return value;
}

/** An optional tensor argument: undefined goes without it; anything else must be a Tensor. */
export function optionalTensor(kernel: string, name: string, value: unknown): Tensor | undefined {
  if (value === undefined || value instanceof Tensor) return value;
  throw new TypeError(`${kernel}: ${name} must be a Tensor, or undefined to go without it, got ${describe(value)}`);
}

/** A yes/no option: undefined is no; anything but a boolean is refused rather than read as truthy or falsy. */
export function optionalFlag(kernel: string, name: string, value: unknown): boolean {
  if (value === undefined) return false;
  if (typeof value === "boolean") return value;
  throw new TypeError(`${kernel}: ${name} must be true, false or undefined, got ${describe(value)}`);
}

/** An optional option that names one of `choices`: undefined goes without it; anything else must be one of them. */
export function optionalChoice<C extends string>(kernel: string, name: string, value: unknown, choices: readonly C[]): C | undefined {
  if (value === undefined) return undefined;
  if (!choices.includes(value as C)) throw new TypeError(`${kernel}: ${name} must be one of ${choices.join(", ")}, got ${String(value)}`);
  return value as C;
}

const maxInt32 = 2 ** 31 - 1;

/**
 * A sink or window longer than everything there is (`span` tokens) means all of it: it is cut to
 * `span` here (to 1 when there is nothing), so that a "no limit" value such as 2^31 - 1 gives the
 * same result as the exact one instead of overflowing the kernels' 32-bit ring arithmetic.
 * Anything that is not an integer up to 2^31 - 1 passes unchanged, for the addon to refuse.
 */
export function clampToSpan<T>(value: T, span: number | undefined): T | number {
  if (typeof value !== "number" || !Number.isInteger(value) || typeof span !== "number" || !Number.isInteger(span) || span < 0)
    return value;
  return value > span && value <= maxInt32 ? Math.max(span, 1) : value;
}

/** `{ sink, window }`-like settings with both cut to `span` (see clampToSpan). */
export function clampRing<T extends { sink?: unknown; window?: unknown }>(ring: T | undefined, span: number | undefined): T | undefined {
  if (ring === undefined || typeof ring !== "object" || ring === null) return ring;
  return { ...ring, sink: clampToSpan(ring.sink, span), window: clampToSpan(ring.window, span) };
}
