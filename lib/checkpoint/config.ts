// config.json of a Hugging Face checkpoint, checked and normalised into what the decoder needs.
// Both the classic keys (rope_theta + rope_scaling) and the newer rope_parameters are read.
import * as fs from "node:fs";
import * as path from "node:path";

/** The decoder architectures config.json may name. */
export type Architecture = "LlamaForCausalLM" | "MistralForCausalLM" | "Qwen2ForCausalLM";
export const supportedArchitectures: readonly Architecture[] = ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"];

/** How RoPE frequencies are scaled for contexts past the trained one (rope_scaling or rope_parameters). */
export type RopeScaling =
  | { type: "default" }
  | { type: "linear"; factor: number }
  | { type: "llama3"; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number };

/** config.json as the decoder reads it: the architecture's sizes, RoPE, norms and special token ids. */
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
  /** Biases on the q, k and v projections: Qwen2's always, Llama's with attention_bias. */
  attentionBias: boolean;
  /** A bias on the o projection: Llama's attention_bias (Qwen2 has none there). */
  outputBias: boolean;
  /** Mistral's sliding window (every layer attends to the last `slidingWindow` tokens), or null. */
  slidingWindow: number | null;
  bosTokenId: number | null;
  /** The ids that end generation: generation_config.json's eos_token_id where it has one (as transformers' generate), else config.json's. */
  eosTokenIds: number[];
  /** The checkpoint's declared dtype (torch_dtype / dtype), if any. */
  dtype: string | null;
}

/**
 * A config problem, naming the file and the field.
 * @example
 * try {
 *   model = await loadModel(dir);
 * } catch (err) {
 *   if (err instanceof ConfigError) console.error(`this checkpoint's settings cannot be used: ${err.message}`); else throw err;
 * }
 */
export class ConfigError extends Error {
  /**
   * `problem` in `file`; the message is both.
   * @example new ConfigError("config.json", "'rope_scaling' type 'yarn' is not supported").message // "config.json: 'rope_scaling' type 'yarn' is not supported"
   */
  constructor(file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = "ConfigError";
  }
}

/**
 * Upper bounds of config.json's integer fields: far above any real checkpoint (the largest
 * today have ~128 layers, 16K hidden size, 256K vocabularies), yet small enough that
 * everything planned from them (a layout per layer, one cache per layer, token ids and positions
 * in int32) stays cheap and in range. They are checked before anything is planned or allocated.
 */
export const configLimits = {
  layers: 1024,
  hiddenSize: 1 << 17,
  intermediateSize: 1 << 20,
  heads: 1024,
  // The attention kernels' largest head (the CPU's; CUDA takes 64 and 128, checked at loadModel).
  headDim: 256,
  vocabSize: 1 << 24,
  positions: 1 << 30,
} as const;

/**
 * Reads and checks `dir/config.json`, and the EOS ids of `dir/generation_config.json` if it has any
 * (Llama 3 Instruct lists several there: <|end_of_text|>, <|eom_id|>, <|eot_id|>).
 * @example const config = readConfig("./Llama-3.1-8B-Instruct"); // config.layers === 32
 */
export function readConfig(dir: string): ModelConfig {
  if (typeof dir !== "string") throw new TypeError(`readConfig: dir must be a model directory's path (a string), got ${show(dir)}`);
  if (fs.statSync(dir, { throwIfNoEntry: false })?.isFile())
    throw new ConfigError(dir, "is a file; give the model's directory (the one that holds config.json)");
  const file = path.join(dir, "config.json");
  const config = parseConfig(readJsonObject(file, "not found: is this a Hugging Face model directory?") as Record<string, unknown>, file);
  const generationFile = path.join(dir, "generation_config.json");
  const generation = readJsonObject(generationFile);
  if (generation?.eos_token_id != null) config.eosTokenIds = eosIds(generation.eos_token_id, config.vocabSize, generationFile);
  return config;
}

/** A JSON object file, or undefined if the file is absent and `missing` (the error then) is not given. */
function readJsonObject(file: string, missing?: string): Record<string, unknown> | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === "ENOENT" && missing === undefined) return undefined;
    throw new ConfigError(file, e.code === "ENOENT" ? (missing as string) : `cannot be read as JSON (${e.message})`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new ConfigError(file, `must hold a JSON object, got ${show(raw)}`);
  return raw as Record<string, unknown>;
}

/** eos_token_id (one id or a list of them), each a token id of the vocabulary. */
function eosIds(value: unknown, vocabSize: number, file: string): number[] {
  const ids = Array.isArray(value) ? value : [value];
  for (const id of ids)
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize)
      throw new ConfigError(file, `'eos_token_id' must be a token id in [0, ${vocabSize - 1}], got ${show(id)} (one id or a list of them)`);
  return ids as number[];
}

/** A value as an error message shows it (JSON, except for numbers JSON cannot spell). */
const show = (v: unknown) => (typeof v === "number" || v === undefined ? String(v) : JSON.stringify(v));

/**
 * Checks a parsed config.json and normalises it; every problem is a ConfigError naming the field,
 * the value and what is allowed.
 * @example const config = parseConfig(JSON.parse(text), "config.json");
 */
export function parseConfig(raw: Record<string, unknown>, file = "config.json"): ModelConfig {
  const fail = (problem: string): never => {
    throw new ConfigError(file, problem);
  };
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) fail(`must hold a JSON object, got ${show(raw)}`);
  const int = (key: string, max: number, fallback?: number, min = 1): number => {
    const v = raw[key] ?? fallback;
    if (!Number.isInteger(v) || (v as number) < min || (v as number) > max)
      fail(`'${key}' must be an integer in [${min}, ${max}], got ${show(raw[key])}`);
    return v as number;
  };

  if (raw.quantization_config != null)
    fail(
      `has a quantization_config (${show(raw.quantization_config).slice(0, 80)}): quantized checkpoints are not supported; use the unquantized (F32, F16 or BF16) checkpoint`,
    );
  const architecture = parseArchitecture(raw, fail);

  const layers = int("num_hidden_layers", configLimits.layers);
  const vocabSize = int("vocab_size", configLimits.vocabSize);
  const hiddenSize = int("hidden_size", configLimits.hiddenSize);
  const intermediateSize = int("intermediate_size", configLimits.intermediateSize);
  const heads = int("num_attention_heads", configLimits.heads);
  const kvHeads = raw.num_key_value_heads ?? heads;
  if (!Number.isInteger(kvHeads) || (kvHeads as number) < 1 || (kvHeads as number) > heads || heads % (kvHeads as number))
    fail(
      `'num_key_value_heads' must be an integer in [1, ${heads}] dividing num_attention_heads (${heads}), got ${show(raw.num_key_value_heads)}`,
    );
  const headDim = raw.head_dim == null ? hiddenSize / heads : int("head_dim", configLimits.headDim, undefined, 2);
  if (!Number.isInteger(headDim)) fail(`hidden_size ${hiddenSize} is not divisible by num_attention_heads ${heads}; set head_dim`);
  if (headDim % 2 || headDim > configLimits.headDim)
    fail(`'head_dim' must be even (rotary embeddings rotate pairs) and at most ${configLimits.headDim}, got ${headDim}`);

  const positive = (key: string, value: unknown): number => {
    if (typeof value !== "number" || !Number.isFinite(value) || !(value > 0))
      fail(`'${key}' must be a finite number > 0, got ${show(value)}`);
    return value as number;
  };
  const rmsNormEps = raw.rms_norm_eps ?? 1e-6;
  // The kernels take it as a float32, which must not round it to 0.
  if (typeof rmsNormEps !== "number" || !(Math.fround(rmsNormEps) > 0 && rmsNormEps < 1))
    fail(`'rms_norm_eps' must be a number in (0, 1) that float32 holds (at least 1.4e-45), got ${show(raw.rms_norm_eps)}`);

  // rope_parameters (newer transformers) carries rope_theta and the scaling together.
  const object = (key: string): Record<string, unknown> | null => {
    const v = raw[key];
    if (v == null) return null;
    if (typeof v !== "object" || Array.isArray(v)) fail(`'${key}' must be an object, got ${show(v)}`);
    return v as Record<string, unknown>;
  };
  const ropeParams = object("rope_parameters");
  const scalingRaw = object("rope_scaling") ?? ropeParams;
  const ropeTheta = positive("rope_theta", raw.rope_theta ?? ropeParams?.rope_theta ?? 10000);
  const ropeScaling = parseRopeScaling(scalingRaw, fail);

  let slidingWindow: number | null = null;
  if (architecture === "MistralForCausalLM" && raw.sliding_window != null) slidingWindow = int("sliding_window", configLimits.positions);
  if (architecture === "Qwen2ForCausalLM" && raw.use_sliding_window === true)
    fail("use_sliding_window=true (Qwen2 sliding-window layers) is not supported");

  const tokenId = (key: string, v: unknown): number => {
    if (!Number.isInteger(v) || (v as number) < 0 || (v as number) >= vocabSize)
      fail(`'${key}' must be a token id in [0, ${vocabSize - 1}], got ${show(v)}`);
    return v as number;
  };
  const eosTokenIds = raw.eos_token_id == null ? [] : eosIds(raw.eos_token_id, vocabSize, file);
  const flag = (key: string): boolean => {
    const v = raw[key] ?? false;
    if (typeof v !== "boolean") fail(`'${key}' must be true or false, got ${show(v)}`);
    return v as boolean;
  };
  // transformers builds the MLP's activation from ACT2FN[hidden_act]; ours is SiLU, which both names give.
  const hiddenAct = raw.hidden_act ?? "silu";
  if (hiddenAct !== "silu" && hiddenAct !== "swish")
    fail(`'hidden_act' ${show(hiddenAct)} is not supported: the MLP's activation is SiLU ("silu" or "swish")`);
  // Only Llama reads attention_bias and mlp_bias; Mistral's and Qwen2's projections ignore them.
  const llama = architecture === "LlamaForCausalLM";
  if (llama && flag("mlp_bias")) fail("mlp_bias=true (biases on the gate, up and down projections) is not supported");
  const llamaAttentionBias = llama && flag("attention_bias");
  const dtype = raw.torch_dtype ?? raw.dtype ?? null;
  if (dtype !== null && typeof dtype !== "string") fail(`'torch_dtype' must be a string, got ${show(dtype)}`);
  return {
    architecture,
    vocabSize,
    hiddenSize,
    intermediateSize,
    layers,
    heads,
    kvHeads: kvHeads as number,
    headDim,
    rmsNormEps: rmsNormEps as number,
    ropeTheta,
    ropeScaling,
    maxPositionEmbeddings: int("max_position_embeddings", configLimits.positions, 4096),
    tieWordEmbeddings: flag("tie_word_embeddings"),
    attentionBias: architecture === "Qwen2ForCausalLM" || llamaAttentionBias,
    outputBias: llamaAttentionBias,
    slidingWindow,
    bosTokenId: raw.bos_token_id == null ? null : tokenId("bos_token_id", raw.bos_token_id),
    eosTokenIds,
    dtype: dtype as string | null,
  };
}

/** transformers' Auto classes pick the class by model_type when config.json names no architectures. */
const architectureOfModelType: Record<string, Architecture> = {
  llama: "LlamaForCausalLM",
  mistral: "MistralForCausalLM",
  qwen2: "Qwen2ForCausalLM",
};

function parseArchitecture(raw: Record<string, unknown>, fail: (p: string) => never): Architecture {
  const { architectures, model_type: modelType } = raw;
  if (architectures == null || (Array.isArray(architectures) && architectures.length === 0)) {
    if (typeof modelType === "string" && Object.hasOwn(architectureOfModelType, modelType)) return architectureOfModelType[modelType];
    return fail(
      `has no 'architectures', and its model_type ${show(modelType)} is none of ${Object.keys(architectureOfModelType).join(", ")}: ` +
        `set 'architectures' to one of ${supportedArchitectures.join(", ")}`,
    );
  }
  if (!Array.isArray(architectures))
    fail(`'architectures' must be a list naming the model class (e.g. ["LlamaForCausalLM"]), got ${show(architectures)}`);
  const arch = (architectures as unknown[])[0];
  if (!supportedArchitectures.includes(arch as Architecture))
    fail(`architecture ${show(arch)} is not supported; supported: ${supportedArchitectures.join(", ")}`);
  return arch as Architecture;
}

function parseRopeScaling(raw: Record<string, unknown> | null, fail: (p: string) => never): RopeScaling {
  if (!raw) return { type: "default" };
  const type = raw.rope_type ?? raw.type;
  // A factor without a type would otherwise run unscaled (transformers refuses it too).
  if (type === undefined) fail(`rope_scaling needs its rope_type (or type): default, linear or llama3; got ${show(raw)}`);
  const positive = (key: string): number => {
    const v = raw[key];
    if (typeof v !== "number" || !Number.isFinite(v) || !(v > 0)) fail(`rope_scaling.${key} must be a finite number > 0, got ${show(v)}`);
    return v as number;
  };
  switch (type) {
    case "default":
      return { type: "default" };
    case "linear":
      return { type: "linear", factor: positive("factor") };
    case "llama3": {
      const [factor, lowFreqFactor, highFreqFactor] = [positive("factor"), positive("low_freq_factor"), positive("high_freq_factor")];
      const original = raw.original_max_position_embeddings;
      if (!Number.isInteger(original) || (original as number) < 1 || (original as number) > configLimits.positions)
        fail(`rope_scaling.original_max_position_embeddings must be an integer in [1, ${configLimits.positions}], got ${show(original)}`);
      return {
        type: "llama3",
        factor,
        lowFreqFactor,
        highFreqFactor,
        originalMaxPositionEmbeddings: original as number,
      };
    }
    default:
      return fail(`rope_scaling type ${show(type)} is not supported; supported: default, linear, llama3`);
  }
}
