// What the CUDA kernel test files share: one random source and one tensor scope per file (freed
// after each test), the same random values on the CPU and on cuda:0, and the error measures.
import type { Tensor } from "../../lib";
import { Random } from "./reference";
import { TensorScope } from "./tensors";

export type Half = "bf16" | "f16";

// bf16 keeps 8 significant bits and the kernels round P to the input type before the PV
// product, so a few 1e-3 of relative error is expected; f16 keeps 11 bits, 8x tighter.
export const relTol: Record<Half, number> = { bf16: 1e-2, f16: 2e-3 };

/** Largest absolute difference; -Infinity on both sides (a fully masked row's LSE) counts as equal. */
export function maxAbs(got: Float32Array, want: Float32Array): number {
  let m = 0;
  for (let i = 0; i < want.length; i++) {
    if (want[i] === -Infinity && got[i] === -Infinity) continue;
    const e = Math.abs(got[i] - want[i]);
    m = Number.isNaN(e) ? Infinity : Math.max(m, e);
  }
  return m;
}

/**
 * A test file's random source and tensor scope (disposed after each test), and `pair`: the same
 * random values on the CPU and on cuda:0.
 * @example const { rng, scope, pair } = cudaKernelKit(); const q = pair([4, 2, 64], "bf16");
 */
export function cudaKernelKit(): {
  rng: Random;
  scope: TensorScope;
  pair: (shape: number[], dtype: Half) => { cpu: Tensor; gpu: Tensor };
} {
  const rng = new Random();
  const scope = new TensorScope();
  afterEach(() => scope.dispose());
  const pair = (shape: number[], dtype: Half) => {
    const cpu = scope.random(rng, shape, dtype).tensor;
    return { cpu, gpu: scope.add(cpu.to("cuda:0")) };
  };
  return { rng, scope, pair };
}
