// Shared by the GPU suites: whether CUDA is here (and saying so when it is not), and the
// relative error the GPU checks use.
import { cudaStatus } from "../../lib";

/** `describe`, or `describe.skip` with a printed reason where CUDA is unavailable. */
export function describeWithCuda(suite: string): jest.Describe {
  const status = cudaStatus();
  if (!status.available) process.stderr.write(`\n[lighttransfer] GPU ${suite} tests SKIPPED: ${status.reason}\n\n`);
  return status.available ? describe : describe.skip;
}

/** ‖got − want‖ / ‖want‖, Infinity if any value is not finite. */
export function relError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let num = 0,
    den = 0;
  for (let i = 0; i < want.length; i++) {
    if (!Number.isFinite(got[i])) return Infinity;
    num += (got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}
