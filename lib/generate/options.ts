// The options of sessions and of generation, what a generation gives back, and the checks every
// option passes (once, before anything is prefilled) for Session.generate and generateBatch alike.

import { integerIn, maxTokens, optionalBoolean, optionalSignal, optionsObject, rejectUnknownOptions, show } from "../common/validate";
import { type HybridOptions, type ResolvedHybrid, resolveHybrid } from "../hybrid/options";
import type { HybridState } from "../hybrid/policy";
import type { Decoder } from "../model/decoder";
import { maxTopLogprobs, type TokenLogprob } from "./logprobs";
import { type SamplingOptions, validateSampling } from "./sampling";

/** A session's (and a one-off generation's) context: its length, its prefill chunk and its hybrid (lazy-layer) options. */
export interface SessionOptions {
  /**
   * Most tokens (prompt + generated) this session may hold; default: the model's
   * max_position_embeddings. A larger value is taken as asked: positions past the model's are
   * computed (RoPE goes on), but the model was not trained on them.
   */
  maxContext?: number;
  /**
   * Prompt tokens per prefill chunk (default: model.prefillChunk; for an 8B model in bf16,
   * 16384, or 32768 with about 28 GiB to spare after the weights and KV pool, 65536 with 56 GiB;
   * fewer, longer chunks run faster, and the default keeps a chunk's activations within 1-4 GiB).
   */
  prefillChunk?: number;
  /** LightTransfer: which layers become streaming (lazy). Default: all layers full. */
  hybrid?: HybridOptions;
}

/** One generation's options: how many tokens, when to stop, how to choose each token. */
export interface GenerateOptions extends SamplingOptions {
  /** Default 256. */
  maxNewTokens?: number;
  /** Generation ends before any of these strings; the string itself is not returned. Needs a tokenizer. */
  stop?: readonly string[];
  /** Also end at the model's EOS token(s) (default true). */
  stopAtEos?: boolean;
  /**
   * Return each generated token's log-probability and this many most likely alternatives at its
   * position (0 to 256; 0: the token's own only), in OpenAI's shape. Default: none.
   */
  logprobs?: number;
  /** Ends the generation (between steps, and between a prompt's prefill units) with the signal's reason. */
  signal?: AbortSignal;
}

/** Why a generation ended: an EOS token, a stop string, maxNewTokens, or the session's maxContext. */
export type FinishReason = "eos" | "stop" | "length" | "context";

/** What a generation streams: the text and tokens since the last chunk; the last chunk says why it ended. */
export interface GenerateChunk {
  /**
   * New text since the last chunk; always "" when the model was loaded without a tokenizer. It may
   * trail `tokens`: a character split over byte tokens waits for its last one, text that may begin
   * a stop string for what decides it, and a space the tokenizer's clean-up
   * (Tokenizer.cleansUpSpaces) may still remove for the next token.
   */
  text: string;
  /** Token ids generated in this step. */
  tokens: number[];
  /** Set on the last chunk. */
  finishReason?: FinishReason;
  /** With the `logprobs` option: one entry per token of `tokens`. */
  logprobs?: TokenLogprob[];
}

/** One prompt's whole generation, as generateBatch gives it. */
export interface GenerateResult {
  text: string;
  tokens: number[];
  finishReason: FinishReason;
  /** With the `logprobs` option: one entry per generated token. */
  logprobs?: TokenLogprob[];
  /** A snapshot of the sequence's lazy layers and ratios when it finished (mode "off": none). */
  hybrid?: HybridState;
}

/** A generation's options, checked: the stop rules, the signal, and the sampling options as given. */
export interface GenerateSettings {
  sampling: SamplingOptions;
  maxNewTokens: number;
  stop: readonly string[];
  stopAtEos: boolean;
  /** Alternatives per token when logprobs were asked for. */
  logprobs: number | undefined;
  signal: AbortSignal | undefined;
}

/** A session's options, checked, with the model's defaults filled in. */
export interface SessionSettings {
  maxContext: number;
  prefillChunk: number;
  hybrid: ResolvedHybrid;
}

export const sessionOptionNames = ["maxContext", "prefillChunk", "hybrid"] satisfies Array<keyof SessionOptions>;
export const generateOptionNames = [
  "maxNewTokens",
  "stop",
  "stopAtEos",
  "logprobs",
  "signal",
  "temperature",
  "topK",
  "topP",
  "repetitionPenalty",
  "seed",
] satisfies Array<keyof GenerateOptions>;

/**
 * The session's and the generation's part of model.generate's and generateBatch's options, any
 * other key refused.
 * @example const { session, generate } = splitOptions(options, "generateBatch");
 */
export function splitOptions(
  options: (GenerateOptions & SessionOptions) | undefined,
  what: string,
): { session: SessionOptions; generate: GenerateOptions } {
  const o = optionsObject(options, `${what}: options`) as Record<string, unknown>;
  rejectUnknownOptions(o, [...generateOptionNames, ...sessionOptionNames], `${what}: options`);
  // Read through the object, as the checks read each option: inherited ones and getters count.
  const pick = (names: readonly string[]) => Object.fromEntries(names.filter((k) => o[k] !== undefined).map((k) => [k, o[k]]));
  return { session: pick(sessionOptionNames), generate: pick(generateOptionNames) };
}

/** Largest prompt chunk: a chunk's activations are allocated at once. */
const maxPrefillChunk = 2 ** 20;

/**
 * Checks generate options; errors name the option, prefixed by `what` (the calling function).
 * @example const settings = checkGenerateOptions({ maxNewTokens: 16, temperature: 0.7 }, "generate");
 */
export function checkGenerateOptions(options: GenerateOptions | undefined, what: string): GenerateSettings {
  const o = optionsObject(options, `${what}: options`);
  rejectUnknownOptions(o, generateOptionNames, `${what}: options`, {
    names: sessionOptionNames,
    where: "a session's options, given to createSession",
  });
  const maxNewTokens = integerIn(o.maxNewTokens, `${what}: maxNewTokens`, 0, maxTokens, 256);
  if (o.stop !== undefined && !Array.isArray(o.stop))
    throw new TypeError(`${what}: stop must be an array of non-empty strings, got ${show(o.stop)}`);
  const badStop = o.stop?.findIndex((s) => typeof s !== "string" || s.length === 0) ?? -1;
  if (badStop >= 0) throw new TypeError(`${what}: stop[${badStop}] is ${show(o.stop![badStop])}: stop strings must be non-empty strings`);
  const stopAtEos = optionalBoolean(o.stopAtEos, `${what}: stopAtEos`) ?? true;
  const logprobs = o.logprobs === undefined ? undefined : integerIn(o.logprobs, `${what}: logprobs`, 0, maxTopLogprobs);
  const signal = optionalSignal(o.signal, `${what}: signal`);
  validateSampling(o);
  return { sampling: o, maxNewTokens, stop: o.stop ?? [], stopAtEos, logprobs, signal };
}

/**
 * Checks session options against the decoder's model and fills in its defaults.
 * @example const { maxContext } = checkSessionOptions({ prefillChunk: 512 }, model.decoder, "createSession");
 */
export function checkSessionOptions(
  options: SessionOptions | undefined,
  decoder: Pick<Decoder, "config" | "prefillChunk">,
  what: string,
  alsoAccepted: readonly string[] = [],
): SessionSettings {
  const o = optionsObject(options, `${what}: options`);
  rejectUnknownOptions(o, [...sessionOptionNames, ...alsoAccepted], `${what}: options`, {
    names: generateOptionNames,
    where: "a generation's options, given to generate",
  });
  const config = decoder.config;
  return {
    maxContext: integerIn(o.maxContext, `${what}: maxContext`, 1, maxTokens, config.maxPositionEmbeddings),
    prefillChunk: integerIn(o.prefillChunk, `${what}: prefillChunk`, 1, maxPrefillChunk, decoder.prefillChunk),
    hybrid: resolveHybrid(o.hybrid, config.layers),
  };
}
