// lighttransfer: hybrid long-context LLM inference (LightTransfer, arXiv 2410.13846) for Node.js.
export { Tensor } from "./tensor";
export type { DType, DeviceName, TensorOptions, RawArray } from "./tensor";
export { devices, cudaStatus, memoryUsage, setThreads, getThreads } from "./devices";
export type { DeviceInfo, CpuDeviceInfo, CudaDeviceInfo, CudaStatus, MemoryUsage } from "./devices";
export * as kernels from "./kernels";
export { addonCandidates, loadAddon } from "./native";
