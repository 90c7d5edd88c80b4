// What the machine offers: the CPU, CUDA devices, and why CUDA may be missing.

import { show } from "../common/validate";
import { addon, type CudaStatus, type DeviceInfo, type MemoryUsage } from "./native";
import type { DeviceName } from "./tensor";

export type { CpuDeviceInfo, CudaDeviceInfo, CudaStatus, DeviceInfo, MemoryUsage } from "./native";

/**
 * The CPU followed by every CUDA device.
 * @example
 * for (const d of devices()) console.log(d.id, d.name, (d.totalMemory / 2 ** 30).toFixed(1), "GiB");
 */
export function devices(): DeviceInfo[] {
  return addon().devices();
}

/**
 * Whether CUDA can be used, and if not, why.
 * @example
 * const cuda = cudaStatus();
 * const device = cuda.available ? "cuda:0" : "cpu";
 * if (!cuda.available) console.warn(`running on the CPU: ${cuda.reason}`);
 */
export function cudaStatus(): CudaStatus {
  return addon().cudaStatus();
}

/**
 * The most threads setThreads takes (the native pool's limit).
 * @example setThreads(Math.min(Number(process.env.THREADS ?? 0), maxThreads)); // setThreads throws above it
 */
export const maxThreads = 1024;

/**
 * Sets the number of threads of the CPU kernels (0: one per hardware thread, at most maxThreads).
 * Returns the count in use.
 * @example setThreads(4);
 */
export function setThreads(count: number): number {
  if (!Number.isInteger(count) || count < 0 || count > maxThreads)
    throw new RangeError(`thread count must be an integer in [0, ${maxThreads}] (0: one per hardware thread), got ${show(count)}`);
  return addon().setThreads(count);
}

/**
 * Threads the CPU kernels use now.
 * @example
 * const before = getThreads();
 * setThreads(1); // a single-threaded timing
 * try { kernels.linear({ x, weight }); } finally { setThreads(before); }
 */
export function getThreads(): number {
  return addon().getThreads();
}

/**
 * Bytes held by live tensors now (freed ones, whether by `dispose()` or the GC, are not counted).
 * @example console.log(`${(memoryUsage().cuda / 2 ** 30).toFixed(2)} GiB on the GPU`);
 */
export function memoryUsage(): MemoryUsage {
  return addon().memoryUsage();
}

/**
 * Returns once all the work queued on `device` so far has run (kernels and copies are queued on
 * a CUDA device's stream and run after the call that queued them returns; on the CPU they run
 * when called, so there is nothing to wait for). Throws the error of a kernel that failed.
 * @example
 * kernels.linear({ x, weight, out });
 * synchronize("cuda:0"); // out is computed now
 */
export function synchronize(device: DeviceName): void {
  addon().synchronize(device);
}
