// config.json of a Hugging Face checkpoint, checked and normalised into what the decoder needs.
// Both the classic keys (rope_theta + rope_scaling) and the newer rope_parameters are read.
import * as fs from "node:fs";
import * as path from "node:path";

export type Architecture = "LlamaForCausalLM" | "MistralForCausalLM" | "Qwen2ForCausalLM";
export const supportedArchitectures: readonly Architecture[] = ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"];

export type RopeScaling =
  | { type: "default" }
  | { type: "linear"; factor: number }
  | { type: "llama3"; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number };

export interface ModelConfig {
  architecture: Architecture;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  /** Qwen2 has biases on the q, k and v projections. */
  attentionBias: boolean;
  /** Mistral's sliding window (every layer attends to the last `slidingWindow` tokens), or null. */
  slidingWindow: number | null;
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** The checkpoint's declared dtype (torch_dtype / dtype), if any. */
  dtype: string | null;
}

/** A config problem, naming the file and the field. */
export class ConfigError extends Error {
  constructor(file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = "ConfigError";
  }
}

export function readConfig(dir: string): ModelConfig {
  const file = path.join(dir, "config.json");
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new ConfigError(file, e.code === "ENOENT" ? "not found: is this a Hugging Face model directory?" : `cannot be read as JSON (${e.message})`);
  }
  return parseConfig(raw, file);
}

export function parseConfig(raw: Record<string, unknown>, file = "config.json"): ModelConfig {
  const fail = (problem: string): never => {
    throw new ConfigError(file, problem);
  };
  const int = (key: string, fallback?: number): number => {
    const v = raw[key] ?? fallback;
    if (!Number.isInteger(v) || (v as number) < 1) fail(`'${key}' must be a positive integer, got ${JSON.stringify(raw[key])}`);
    return v as number;
  };
  const num = (key: string, fallback?: number): number => {
    const v = raw[key] ?? fallback;
    if (typeof v !== "number" || !(v > 0)) fail(`'${key}' must be a positive number, got ${JSON.stringify(raw[key])}`);
    return v as number;
  };

  const architectures = raw.architectures as unknown;
  const arch = Array.isArray(architectures) ? architectures[0] : undefined;
  if (!supportedArchitectures.includes(arch as Architecture))
    fail(`architecture ${JSON.stringify(arch ?? raw.model_type)} is not supported; supported: ${supportedArchitectures.join(", ")}`);
  const architecture = arch as Architecture;

  const hiddenSize = int("hidden_size");
  const heads = int("num_attention_heads");
  const kvHeads = int("num_key_value_heads", heads);
  if (heads % kvHeads) fail(`num_attention_heads (${heads}) must be a multiple of num_key_value_heads (${kvHeads})`);
  const headDim = raw.head_dim == null ? hiddenSize / heads : int("head_dim");
  if (!Number.isInteger(headDim)) fail(`hidden_size ${hiddenSize} is not divisible by num_attention_heads ${heads}; set head_dim`);

  // rope_parameters (newer transformers) carries rope_theta and the scaling together.
  const ropeParams = (raw.rope_parameters ?? null) as Record<string, unknown> | null;
  const scalingRaw = (raw.rope_scaling ?? ropeParams ?? null) as Record<string, unknown> | null;
  const ropeTheta = (raw.rope_theta ?? ropeParams?.rope_theta ?? 10000) as number;
  if (typeof ropeTheta !== "number" || !(ropeTheta > 0)) fail(`'rope_theta' must be a positive number, got ${JSON.stringify(ropeTheta)}`);
  const ropeScaling = parseRopeScaling(scalingRaw, fail);

  let slidingWindow: number | null = null;
  if (architecture === "MistralForCausalLM" && raw.sliding_window != null) slidingWindow = int("sliding_window");
  if (architecture === "Qwen2ForCausalLM" && raw.use_sliding_window === true)
    fail("use_sliding_window=true (Qwen2 sliding-window layers) is not supported");

  const eos = raw.eos_token_id;
  const eosTokenIds = eos == null ? [] : Array.isArray(eos) ? (eos as number[]) : [eos as number];
  return {
    architecture,
    vocabSize: int("vocab_size"),
    hiddenSize,
    intermediateSize: int("intermediate_size"),
    layers: int("num_hidden_layers"),
    heads,
    kvHeads,
    headDim,
    rmsNormEps: num("rms_norm_eps", 1e-6),
    ropeTheta,
    ropeScaling,
    maxPositionEmbeddings: int("max_position_embeddings", 4096),
    tieWordEmbeddings: raw.tie_word_embeddings === true,
    attentionBias: architecture === "Qwen2ForCausalLM" || raw.attention_bias === true,
    slidingWindow,
    bosTokenId: typeof raw.bos_token_id === "number" ? raw.bos_token_id : null,
    eosTokenIds,
    dtype: (raw.torch_dtype ?? raw.dtype ?? null) as string | null,
  };
}

function parseRopeScaling(raw: Record<string, unknown> | null, fail: (p: string) => never): RopeScaling {
  if (!raw) return { type: "default" };
  const type = (raw.rope_type ?? raw.type ?? "default") as string;
  const positive = (key: string): number => {
    const v = raw[key];
    if (typeof v !== "number" || !(v > 0)) fail(`rope_scaling.${key} must be a positive number, got ${JSON.stringify(v)}`);
    return v as number;
  };
  switch (type) {
    case "default":
      return { type: "default" };
    case "linear":
      return { type: "linear", factor: positive("factor") };
    case "llama3":
      return {
        type: "llama3",
        factor: positive("factor"),
        lowFreqFactor: positive("low_freq_factor"),
        highFreqFactor: positive("high_freq_factor"),
        originalMaxPositionEmbeddings: positive("original_max_position_embeddings"),
      };
    default:
      return fail(`rope_scaling type '${type}' is not supported; supported: default, linear, llama3`);
  }
}
