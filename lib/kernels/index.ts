// The kernels namespace: direct access to every kernel on tensors, sync and async.
export * from "./attention";
export * from "./cache";
export type { AsyncKernelOptions } from "./call";
export * from "./lazy-ratio";
export * from "./model-ops";
