// Test inputs: random tensors with the float64 values the reference should see.
import { DeviceName, Tensor } from "../../lib";
import { FloatDType, Random, roundArray } from "./reference";

export interface RandomTensor {
  tensor: Tensor;
  /** The stored values, rounded to the dtype by the test's own rounding. */
  values: Float64Array;
}

export function randomTensor(
  rng: Random,
  shape: number[],
  dtype: FloatDType,
  device: DeviceName = "cpu",
  scale = 1,
): RandomTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const raw = rng.normals(n, scale);
  return { tensor: Tensor.from(raw, shape, { dtype, device }), values: roundArray(dtype, raw) };
}

export function int32Tensor(values: number[], shape: number[] = [values.length], device: DeviceName = "cpu"): Tensor {
  return Tensor.from(Int32Array.from(values), shape, { device });
}

/** Disposes every tensor made in a test, whatever happens. */
export class TensorScope {
  private readonly tensors: Tensor[] = [];
  add<T extends Tensor | undefined>(t: T): T {
    if (t) this.tensors.push(t);
    return t;
  }
  random(rng: Random, shape: number[], dtype: FloatDType, device: DeviceName = "cpu", scale = 1): RandomTensor {
    const r = randomTensor(rng, shape, dtype, device, scale);
    this.add(r.tensor);
    return r;
  }
  ints(values: number[], shape?: number[], device: DeviceName = "cpu"): Tensor {
    return this.add(int32Tensor(values, shape, device));
  }
  dispose(): void {
    for (const t of this.tensors) t.dispose();
    this.tensors.length = 0;
  }
}
