// What the machine offers: the CPU, CUDA devices, and why CUDA may be missing.
import { addon } from "./native";

export interface CpuDeviceInfo {
  id: "cpu";
  type: "cpu";
  name: string;
  /** Host memory in bytes. */
  totalMemory: number;
  /** Threads the CPU kernels use. */
  threads: number;
}

export interface CudaDeviceInfo {
  id: `cuda:${number}`;
  type: "cuda";
  index: number;
  name: string;
  totalMemory: number;
  freeMemory: number;
  /** e.g. "9.0" for H100/H200. */
  computeCapability: string;
  multiprocessors: number;
}

export type DeviceInfo = CpuDeviceInfo | CudaDeviceInfo;

export interface CudaStatus {
  /** Whether this build of the addon has the CUDA backend. */
  built: boolean;
  /** Whether a CUDA device can be used now. */
  available: boolean;
  deviceCount: number;
  /** Why CUDA is unavailable (missing from the build, no driver, no device). */
  reason?: string;
}

/**
 * The CPU followed by every CUDA device.
 * @example
 * for (const d of devices()) console.log(d.id, d.name, (d.totalMemory / 2 ** 30).toFixed(1), "GiB");
 */
export function devices(): DeviceInfo[] {
  return addon().devices() as unknown as DeviceInfo[];
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
 * Sets the number of threads of the CPU kernels (0: one per hardware thread). Returns the count in use.
 * @example setThreads(4);
 */
export function setThreads(count: number): number {
  if (!Number.isInteger(count) || count < 0) throw new RangeError(`thread count must be an integer >= 0, got ${count}`);
  return addon().setThreads(count);
}

/** Threads the CPU kernels use now. */
export function getThreads(): number {
  return addon().getThreads();
}

/** Bytes held by live tensors. */
export interface MemoryUsage {
  /** Host memory of CPU tensors. */
  cpu: number;
  /** Device memory of CUDA tensors, all devices together. */
  cuda: number;
}

/**
 * Bytes held by live tensors now (freed ones, whether by `dispose()` or the GC, are not counted).
 * @example console.log(`${(memoryUsage().cuda / 2 ** 30).toFixed(2)} GiB on the GPU`);
 */
export function memoryUsage(): MemoryUsage {
  return addon().memoryUsage();
}
