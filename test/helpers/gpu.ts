// Shared by the GPU suites: whether CUDA is here (and saying so when it is not), the relative
// error the GPU checks use, and a tensor's raw bits.
import { cudaStatus, type Tensor } from "../../lib";
import { errorToScale } from "./reference";

/** `describe`, or `describe.skip` with a printed reason where CUDA is unavailable. */
export function describeWithCuda(suite: string): jest.Describe {
  const status = cudaStatus();
  if (!status.available) process.stderr.write(`\n[lighttransfer] GPU ${suite} tests SKIPPED: ${status.reason}\n\n`);
  return status.available ? describe : describe.skip;
}

/** ‖got − want‖ / ‖want‖, Infinity if any value is not finite. */
export function relError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  return errorToScale(got, want, want);
}

/** A tensor's contents as raw bits, so that comparisons tell -0 from +0 and one NaN from another. */
export function bits(t: Tensor): Uint32Array | Uint16Array {
  const a = t.toArray();
  return a instanceof Float32Array ? new Uint32Array(a.buffer, a.byteOffset, a.length) : (a as Uint16Array);
}
