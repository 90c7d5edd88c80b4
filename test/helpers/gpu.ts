// Shared by the GPU suites: whether CUDA is here (and saying so when it is not), and the
// relative error the GPU checks use.
import { cudaStatus } from "../../lib";
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
