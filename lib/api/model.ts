// loadModel and Model: a checkpoint on a device, its tokenizer (if it has one), and the KV page
// pool its sessions share.
import * as fs from "node:fs";
import * as path from "node:path";
import { PagePool } from "../cache/page-pool";
import { ConfigError, type ModelConfig, readConfig } from "../checkpoint/config";
import { Tokenizer } from "../checkpoint/tokenizer";
import { Checkpoint, type LoadProgress, loadWeights, type ModelWeights, weightBytes, weightTensors } from "../checkpoint/weights";
import { defaultPageSize, maxPageSize, pageBytes } from "../common/geometry";
import {
  integerIn,
  optionalBoolean,
  optionalChoice,
  optionalFunction,
  optionalSignal,
  optionsObject,
  rejectUnknownOptions,
  show,
} from "../common/validate";
import {
  type GenerateChunk,
  type GenerateOptions,
  type GenerateResult,
  generateOptionNames,
  type SessionOptions,
  sessionOptionNames,
  splitOptions,
} from "../generate/options";
import { noTokenizerError, type Prompt } from "../generate/prompt";
import { type Continuation, type ScoreOptions, type ScoreRequest, type ScoreResult, scoreRequests } from "../generate/score";
import { Decoder, prefillActivationBudget } from "../model/decoder";
import { cudaStatus, devices } from "../runtime/devices";
import { type DeviceName, type DType, dtypeBytes } from "../runtime/tensor";
import { generateBatch, Session } from "./session";

/** loadModel's options: where the model runs, in which dtypes, and the KV pool's size. */
export interface LoadModelOptions {
  /** "cpu", "cuda" or "cuda:N"; default "cuda" when available, else "cpu". */
  device?: DeviceName;
  /** Weight dtype on the device. CUDA default: bf16 (f16 if the checkpoint is f16); CPU keeps what is stored. */
  dtype?: DType;
  /** Bytes of KV page pool shared by this model's sessions. Default: 512 MiB on the CPU, half the free GPU memory after the weights. */
  kvCacheBytes?: number;
  /** Tokens per KV page (default `defaultPageSize`, 16). */
  pageSize?: number;
  /**
   * Activation and KV-cache dtype. CPU default f32; "bf16" or "f16" there reproduces what the GPU
   * computes (tests compare the two). On CUDA it is always the weights' 16-bit type.
   */
  computeDType?: DType;
  /**
   * Load tokenizer.json (default: when the directory has one). Without a tokenizer, prompts must
   * be token ids, stop strings cannot be used, and generated chunks carry token ids with empty text.
   */
  tokenizer?: boolean;
  onProgress?: (progress: LoadProgress) => void;
  signal?: AbortSignal;
}

/**
 * Refuses anything but a Model from loadModel where an API takes one, saying what it got (a
 * Session, a path) rather than failing inside with a TypeError.
 * @example expectModel(model, "createServer");
 */
export function expectModel(model: unknown, what: string): asserts model is Model {
  if (!(model instanceof Model)) throw new TypeError(`${what}: model must be a Model from loadModel(), got ${show(model)}`);
}

/**
 * Loads a Hugging Face model directory (config.json, *.safetensors, and tokenizer.json unless
 * `tokenizer: false` or the directory has none: then prompts are token ids and chunks carry ids only).
 * @example
 * const model = await loadModel("./Llama-3.1-8B-Instruct", { device: "cuda", onProgress: (p) => bar.update(p.loadedBytes) });
 * for await (const chunk of model.generate("Once upon a time", { maxNewTokens: 64 })) process.stdout.write(chunk.text);
 * await model.dispose();
 * @example
 * const bare = await loadModel("./Llama-3.1-8B-Instruct", { tokenizer: false });
 * for await (const chunk of bare.generate([128000, 9906], { maxNewTokens: 8 })) console.log(chunk.tokens);
 */
export async function loadModel(dir: string, options?: LoadModelOptions): Promise<Model> {
  options = validateLoad(dir, options);
  options.signal?.throwIfAborted();
  const device = options.device ?? (cudaStatus().available ? "cuda:0" : "cpu");
  if (device !== "cpu" && !cudaStatus().available)
    throw new Error(`device ${device} was asked for, but CUDA is not available: ${cudaStatus().reason}`);
  const config = readConfig(dir);
  if (device !== "cpu" && config.headDim !== 64 && config.headDim !== 128)
    throw new ConfigError(
      path.join(dir, "config.json"),
      `the head dimension is ${config.headDim}, and the CUDA attention kernels take 64 or 128; load this model with device "cpu"`,
    );
  const withTokenizer = options.tokenizer ?? fs.existsSync(path.join(dir, "tokenizer.json"));
  const tokenizer = withTokenizer ? Tokenizer.fromDirectory(dir) : undefined;
  const checkpoint = new Checkpoint(dir);
  try {
    const stored = checkpoint.file("model.embed_tokens.weight").get("model.embed_tokens.weight").dtype;
    const dtype: DType | undefined = options.dtype ?? (device === "cpu" ? undefined : stored === "F16" ? "f16" : "bf16");
    if (device !== "cpu" && dtype === "f32") throw new Error("f32 weights are CPU-only; use dtype 'bf16' or 'f16' on CUDA");
    checkKvCacheBytes(options, config, device === "cpu" ? (options.computeDType ?? "f32") : dtype!);
    const weights = await loadWeights(checkpoint, config, { device, dtype, onProgress: options.onProgress, signal: options.signal });
    const activation: DType = device === "cpu" ? (options.computeDType ?? "f32") : weights.embed.dtype;
    try {
      // loadWeights looks at the signal before each tensor: an abort during the last one (in its
      // read or its onProgress) is seen only here.
      options.signal?.throwIfAborted();
      return new Model(dir, config, tokenizer, weights, device, activation, options);
    } catch (err) {
      for (const t of weightTensors(weights)) t.dispose();
      throw err;
    }
  } finally {
    checkpoint.close();
  }
}

const floatDTypes = ["f32", "f16", "bf16"] as const;
const loadOptionNames = [
  "device",
  "dtype",
  "kvCacheBytes",
  "pageSize",
  "computeDType",
  "tokenizer",
  "onProgress",
  "signal",
] satisfies Array<keyof LoadModelOptions>;

/** Every loadModel option checked, before anything is read. */
function validateLoad(dir: unknown, options: LoadModelOptions | undefined): LoadModelOptions {
  if (typeof dir !== "string" || dir === "")
    throw new TypeError(`loadModel: dir must be a model directory path (a string), got ${show(dir)}`);
  const o = optionsObject(options, "loadModel: options");
  rejectUnknownOptions(o, loadOptionNames, "loadModel: options", {
    names: [...sessionOptionNames, ...generateOptionNames],
    where: "options of a session or a generation, given to createSession or generate",
  });
  if (o.device !== undefined && (typeof o.device !== "string" || !/^(cpu|cuda|cuda:\d+)$/.test(o.device)))
    throw new RangeError(`loadModel: device must be "cpu", "cuda" or "cuda:N", got ${show(o.device)}`);
  optionalChoice(o.dtype, "loadModel: dtype", floatDTypes);
  optionalChoice(o.computeDType, "loadModel: computeDType", floatDTypes);
  if (o.kvCacheBytes !== undefined && (typeof o.kvCacheBytes !== "number" || !Number.isFinite(o.kvCacheBytes) || !(o.kvCacheBytes > 0)))
    throw new RangeError(`loadModel: kvCacheBytes must be a number of bytes > 0, got ${show(o.kvCacheBytes)}`);
  if (o.pageSize !== undefined) integerIn(o.pageSize, "loadModel: pageSize", 1, maxPageSize);
  optionalBoolean(o.tokenizer, "loadModel: tokenizer");
  optionalFunction(o.onProgress, "loadModel: onProgress");
  optionalSignal(o.signal, "loadModel: signal");
  return o;
}

/** An asked-for KV pool must hold a page of every layer (one token of one sequence), checked before the weights load. */
function checkKvCacheBytes({ kvCacheBytes, pageSize = defaultPageSize }: LoadModelOptions, config: ModelConfig, dtype: DType): void {
  if (kvCacheBytes === undefined) return;
  const bytesPerPage = pageBytes({ pageSize, kvHeads: config.kvHeads, headDim: config.headDim, elementBytes: dtypeBytes(dtype) });
  if (kvCacheBytes < config.layers * bytesPerPage)
    throw new RangeError(
      `loadModel: kvCacheBytes ${kvCacheBytes} holds ${Math.floor(kvCacheBytes / bytesPerPage)} KV page(s) of ${bytesPerPage} bytes ` +
        `(${pageSize} tokens of one layer in ${dtype}), and a sequence needs a page in each of the model's ${config.layers} layers; ` +
        `ask for at least ${config.layers * bytesPerPage} bytes`,
    );
}

/**
 * A checkpoint loaded on a device (see loadModel), with its tokenizer and the KV page pool its
 * sessions share. It holds device memory until disposed.
 * @example
 * await using model = await loadModel("./Llama-3.1-8B-Instruct");
 * console.log(model.config.layers, "layers on", model.device);
 */
export class Model implements AsyncDisposable {
  /** @internal */
  readonly decoder: Decoder;
  /**
   * The KV page pool every session of this model draws from: `numPages` pages of `pageSize` tokens of one layer each.
   * @example const longest = (model.pool.numPages * model.pool.pageSize) / model.config.layers; // tokens of one sequence with every layer full
   */
  readonly pool: PagePool;
  private disposed = false;
  private readonly sessions = new Set<Session>();

  /** @internal use loadModel */
  constructor(
    /**
     * The directory it was loaded from.
     * @example const onCpu = await loadModel(model.dir, { device: "cpu" }); // the same checkpoint, for a reference run
     */
    readonly dir: string,
    /**
     * The checkpoint's config.json, as read and checked.
     * @example const { layers, kvHeads, headDim } = model.config;
     */
    readonly config: ModelConfig,
    /** @internal the tokenizer, undefined when the model was loaded without one */
    readonly optionalTokenizer: Tokenizer | undefined,
    private readonly weights: ModelWeights,
    /**
     * Where the weights and the KV pool live: the device loadModel was given, else the one it chose ("cuda:0" or "cpu").
     * @example if (model.device === "cpu") console.warn("CUDA is not available: generation will be slow");
     */
    readonly device: DeviceName,
    /**
     * Activation and KV dtype.
     * @example const kvBytesPerToken = 2 * model.config.layers * model.config.kvHeads * model.config.headDim * (model.dtype === "f32" ? 4 : 2);
     */
    readonly dtype: DType,
    options: LoadModelOptions,
  ) {
    const pageSize = options.pageSize ?? defaultPageSize;
    const bytesPerPage = pageBytes({ pageSize, kvHeads: config.kvHeads, headDim: config.headDim, elementBytes: dtypeBytes(dtype) });
    const cuda = devices().find((d) => d.id === (device === "cuda" ? "cuda:0" : device));
    const freeBytes = device === "cpu" ? 0 : ((cuda as { freeMemory?: number })?.freeMemory ?? 0);
    const defaultBytes = device === "cpu" ? 512 * 2 ** 20 : Math.floor(freeBytes / 2);
    const numPages = Math.max(1, Math.floor((options.kvCacheBytes ?? defaultBytes) / bytesPerPage));
    try {
      this.pool = new PagePool({ numPages, pageSize, kvHeads: config.kvHeads, headDim: config.headDim, dtype, device });
    } catch (err) {
      // The allocator's own remedy (free tensors, smaller shapes) is not the one here: the pool's size is an option.
      if (!/out of (host )?memory/i.test((err as Error).message)) throw err;
      const gib = ((numPages * bytesPerPage) / 2 ** 30).toFixed(2);
      throw new Error(
        `loadModel: the KV pool (${gib} GiB, kvCacheBytes${options.kvCacheBytes === undefined ? "' default" : ""}) does not fit in ${device}'s memory: ` +
          `${(err as Error).message.replace(/[.;]\s*(free|Dispose)\b.*$/s, "")}; ask for a smaller kvCacheBytes`,
        { cause: err },
      );
    }
    const spareBytes = freeBytes - numPages * bytesPerPage;
    try {
      this.decoder = new Decoder(config, weights, this.pool, device, dtype, prefillActivationBudget(spareBytes));
    } catch (err) {
      this.pool.dispose();
      throw err;
    }
  }

  /**
   * The model's tokenizer; an Error if it was loaded without one (see `hasTokenizer`).
   * @example const ids = model.tokenizer.encode("Hello");
   */
  get tokenizer(): Tokenizer {
    if (!this.optionalTokenizer) throw noTokenizerError("model.tokenizer");
    return this.optionalTokenizer;
  }

  /**
   * Whether the model was loaded with a tokenizer (text prompts, stop strings and text in chunks need one).
   * @example const prompt = model.hasTokenizer ? "Hello" : [1, 15043];
   */
  get hasTokenizer(): boolean {
    return this.optionalTokenizer !== undefined;
  }

  /**
   * Prompt tokens per prefill chunk unless a session asks for another: chosen at load from the
   * model's shape and the device memory left after the weights and the KV pool.
   * @example const session = model.createSession({ prefillChunk: Math.min(model.prefillChunk, 4096) });
   */
  get prefillChunk(): number {
    return this.decoder.prefillChunk;
  }

  /**
   * Bytes of weights held on the device.
   * @example console.log(`${(model.weightBytes / 2 ** 30).toFixed(1)} GiB of weights`);
   */
  get weightBytes(): number {
    return weightBytes(this.weights);
  }

  /**
   * A conversation: one sequence whose KV cache persists across generate() calls.
   * @example const chat = model.createSession({ maxContext: 8192 });
   */
  createSession(options?: SessionOptions): Session {
    this.assertLive();
    const session = new Session(this, options, () => this.sessions.delete(session));
    this.sessions.add(session);
    return session;
  }

  /**
   * Generates from a prompt (text, chat messages rendered with the model's template, or token
   * ids) in a fresh session that is disposed at the end.
   * @example for await (const chunk of model.generate([1, 15043, 29892], { maxNewTokens: 16 })) console.log(chunk.tokens);
   */
  async *generate(prompt: Prompt, options?: GenerateOptions & SessionOptions): AsyncGenerator<GenerateChunk> {
    const { session: sessionOptions, generate } = splitOptions(options, "generate");
    const session = this.createSession(sessionOptions);
    try {
      yield* session.generate(prompt, generate);
    } finally {
      session.dispose();
    }
  }

  /**
   * Generates for many prompts at once, decoding them as one batch (sequences that finish
   * early give their KV pages back while the others continue). Prompts are text, chat messages
   * or token ids, mixed as needed; each result's `hybrid` is a snapshot of its sequence's state.
   * @example const results = await model.generateBatch(["a", "b", [1, 15043]], { maxNewTokens: 32 });
   */
  async generateBatch(prompts: readonly Prompt[], options?: GenerateOptions & SessionOptions): Promise<GenerateResult[]> {
    this.assertLive();
    return generateBatch(this, prompts, options);
  }

  /**
   * Teacher-forced log-probabilities of `continuation` after `prompt`: each continuation token's
   * natural-log probability given the prompt and the continuation tokens before it, their sum and
   * the perplexity. The prompt is text, chat messages or token ids as in generate(); a text
   * continuation is tokenized without special tokens. The `hybrid` option works as in
   * createSession (lazy layers chosen on the prompt); the sequence is freed afterwards.
   * @example
   * const { logprobs, sum, perplexity } = await model.score("The capital of France is", " Paris");
   * @example
   * const lazy = await model.score([1, 450, 7483], [310, 3444], { hybrid: { mode: "auto", fullLayers: 0.5 } });
   */
  async score(prompt: Prompt, continuation: Continuation, options?: ScoreOptions): Promise<ScoreResult> {
    this.assertLive();
    const [result] = await scoreRequests(this, [{ prompt, continuation }], options, "score", () => !this.disposed);
    return result;
  }

  /**
   * score() for many { prompt, continuation } pairs, each on its own fresh sequence, giving the
   * same numbers as scoring them one by one; an AbortSignal stops it between requests and between
   * the steps of a prefill.
   * @example
   * const results = await model.scoreBatch([{ prompt: "2 + 2 =", continuation: " 4" }, { prompt: "2 + 2 =", continuation: " 5" }]);
   * const better = results[0].sum > results[1].sum;
   */
  async scoreBatch(requests: readonly ScoreRequest[], options?: ScoreOptions): Promise<ScoreResult[]> {
    this.assertLive();
    return scoreRequests(this, requests, options, "scoreBatch", () => !this.disposed);
  }

  /**
   * Whether dispose() was called.
   * @example if (cached.isDisposed) cached = await loadModel(cached.dir); // someone else freed the shared model
   */
  get isDisposed(): boolean {
    return this.disposed;
  }

  /** @internal */
  assertLive(): void {
    if (this.disposed) throw new Error("this model was disposed; load it again with loadModel()");
  }

  /**
   * Frees the weights, the KV pool and every session's caches now, without waiting for the GC;
   * generations still running end with an AbortError at their next step. Safe to call twice.
   * @example
   * const model = await loadModel("./Llama-3.1-8B-Instruct");
   * try {
   *   console.log((await model.score("2 + 2 =", " 4")).perplexity);
   * } finally {
   *   await model.dispose();
   * }
   */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    for (const s of [...this.sessions]) s.dispose();
    this.decoder.dispose();
    this.pool.dispose();
    for (const t of weightTensors(this.weights)) t.dispose();
    this.disposed = true;
    await this.optionalTokenizer?.dispose();
  }

  /**
   * dispose(), for `await using`.
   * @example
   * {
   *   await using model = await loadModel("./Llama-3.1-8B-Instruct");
   *   for await (const chunk of model.generate("Hi", { maxNewTokens: 8 })) process.stdout.write(chunk.text);
   * } // the model is freed here, even if generate() threw
   */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }
}
