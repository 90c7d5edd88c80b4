// lighttransfer: hybrid long-context LLM inference (LightTransfer, arXiv 2410.13846) for Node.js.

export type { CalibrateOptions, LayerFile } from "./api/calibrate";
export { calibrate, layerFileOptions, readLayerFile } from "./api/calibrate";
export type { LoadModelOptions } from "./api/model";
export { loadModel, Model } from "./api/model";
export type { SessionStats } from "./api/session";
export { Session } from "./api/session";
export type { PagePool } from "./cache/page-pool";
export { PoolExhaustedError } from "./cache/page-pool";
export type { Architecture, ModelConfig, RopeScaling } from "./checkpoint/config";
export { ConfigError, readConfig } from "./checkpoint/config";
export { EncoderThreadError } from "./checkpoint/encoder-thread";
export { SafetensorsError } from "./checkpoint/safetensors";
export type { ChatMessage } from "./checkpoint/tokenizer";
export { Tokenizer } from "./checkpoint/tokenizer";
export type { LoadProgress } from "./checkpoint/weights";
export type { RingShape, StreamingShape } from "./common/geometry";
export { defaultPageSize, streamingDefaults } from "./common/geometry";
export type { EvalSettings } from "./eval/config";
export { defaultEvalSettings, readEvalSettings, resolveEvalConfig } from "./eval/config";
export type { Corpus } from "./eval/corpus";
export { brownCorpus } from "./eval/corpus";
export type {
  AccuracyCell,
  EvalConfig,
  EvalProgress,
  EvalReport,
  PerplexityResult,
  RunEvalOptions,
  SampleResult,
} from "./eval/harness";
export {
  accuracyCells,
  answerSample,
  checkEvalPrompts,
  checkEvalSetup,
  heldOutWindow,
  runEval,
  scoreAnswer,
  wilsonInterval,
} from "./eval/harness";
export type { EvalMode, ModeKind, ModeOptions } from "./eval/modes";
export { evalModes } from "./eval/modes";
export { accuracyVsContextSvg, accuracyVsFractionSvg, averageAccuracy, markdownReport, meanPerplexity } from "./eval/report";
export type { SampleOptions, SampleSpec, TaskName, TaskSample } from "./eval/tasks";
export { isCorrect, makeSample, rulerScore, taskNames } from "./eval/tasks";
export type { TokenLogprob, TopLogprob } from "./generate/logprobs";
export type { FinishReason, GenerateChunk, GenerateOptions, GenerateResult, SessionOptions } from "./generate/options";
export type { Prompt } from "./generate/prompt";
export type { SamplingOptions } from "./generate/sampling";
export type { Continuation, ScoreOptions, ScoreRequest, ScoreResult } from "./generate/score";
export type { HybridMode, HybridOptions } from "./hybrid/options";
export type { MemoryPlan, MemoryPlanOptions, SequencePlan } from "./hybrid/planner";
export { planMemory } from "./hybrid/planner";
export type { HybridState } from "./hybrid/policy";
export * as kernels from "./kernels";
export type { DecodeStats, EagerReason } from "./model/decode-graph";
export type { CpuDeviceInfo, CudaDeviceInfo, CudaStatus, DeviceInfo, MemoryUsage } from "./runtime/devices";
export { cudaStatus, devices, getThreads, maxThreads, memoryUsage, setThreads, synchronize } from "./runtime/devices";
export type { GemmBackendInfo } from "./runtime/native";
export { addonCandidates, addonPath, loadAddon, platformPackageName } from "./runtime/native";
export type { DeviceName, DType, RawArray, TensorOptions } from "./runtime/tensor";
export { PendingRead, Tensor } from "./runtime/tensor";
export type { ServerOptions } from "./serve";
export { createServer } from "./serve";
