// lighttransfer: hybrid long-context LLM inference (LightTransfer, arXiv 2410.13846) for Node.js.
export { Tensor } from "./tensor";
export type { DType, DeviceName, TensorOptions, RawArray } from "./tensor";
export { devices, cudaStatus, memoryUsage, setThreads, getThreads } from "./devices";
export type { DeviceInfo, CpuDeviceInfo, CudaDeviceInfo, CudaStatus, MemoryUsage } from "./devices";
export * as kernels from "./kernels";
export { addonCandidates, loadAddon } from "./native";
export { loadModel, Model } from "./api/model";
export type { LoadModelOptions } from "./api/model";
export { Session } from "./api/session";
export type { Prompt, SessionOptions, GenerateOptions, GenerateChunk, GenerateResult, SessionStats, FinishReason } from "./api/session";
export type { SamplingOptions } from "./model/sampling";
export { Tokenizer } from "./tokenizer";
export type { ChatMessage } from "./tokenizer";
export type { ModelConfig } from "./model/config";
export type { LoadProgress } from "./model/weights";
export { PoolExhaustedError } from "./cache/page-pool";
