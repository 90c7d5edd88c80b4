// Shared plumbing of the kernel wrappers: allocate outputs, call the addon, and on failure
// free what this call allocated (never the caller's tensors).
import { Tensor } from "../tensor";

export interface AsyncKernelOptions {
  /** Rejects with the signal's reason if aborted before the kernel starts. */
  signal?: AbortSignal;
}

/** Outputs the caller passed in are kept; outputs made here are disposed if the call fails. */
export class Outputs {
  private readonly made: Tensor[] = [];

  take(given: Tensor | undefined, make: () => Tensor): Tensor {
    if (given) return given;
    const t = make();
    this.made.push(t);
    return t;
  }

  disposeMade(): void {
    for (const t of this.made) t.dispose();
  }
}

export function runSync<R>(outputs: Outputs, call: () => void, result: R): R {
  try {
    call();
  } catch (err) {
    outputs.disposeMade();
    throw err;
  }
  return result;
}

export async function runAsync<R>(
  outputs: Outputs,
  call: () => Promise<void>,
  result: R,
  options: AsyncKernelOptions,
): Promise<R> {
  try {
    options.signal?.throwIfAborted();
    await call();
  } catch (err) {
    outputs.disposeMade();
    throw err;
  }
  return result;
}

/** The native form of a tensor argument (undefined stays undefined). */
export function handleOf(t: Tensor | undefined): unknown {
  return t?.handle;
}

export function requireTensor(name: string, value: unknown): Tensor {
  if (!(value instanceof Tensor)) throw new TypeError(`${name} must be a Tensor`);
  return value;
}
