// The OpenAI wire format: a validated request body into what the scheduler runs (prompt ids,
// stop rules, sampling, hybrid options), and generated chunks into completion and chat
// completion objects, whole or as server-sent-event chunks, with usage. Errors carry the status
// and the OpenAI error body.
import type { ChatMessage, Tokenizer } from "../checkpoint/tokenizer";
import type { TokenLogprob } from "../generate/logprobs";
import { checkGenerateOptions, type FinishReason } from "../generate/options";
import { checkPromptFits, type Prompt, promptIds } from "../generate/prompt";
import type { MemberSettings } from "../generate/stepper";
import { type HybridOptions, type ResolvedHybrid, resolveHybrid } from "../hybrid/options";
import type { ChatBody, CompletionBody, GenerationBody } from "./schemas";

/** An error answered with `status` and an OpenAI error body. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type = status === 429 ? "rate_limit_error" : status >= 500 ? "server_error" : "invalid_request_error",
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
    this.name = "ApiError";
  }

  /** The body: `{ error: { message, type, param, code } }`. */
  get body(): OpenAiErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export interface OpenAiErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** What the server needs of the model and its own settings to turn a body into a request. */
export interface RequestContext {
  modelName: string;
  vocabSize: number;
  layers: number;
  slidingWindow: number | null;
  tokenizer: Tokenizer | undefined;
  maxContext: number;
  prefillChunk: number;
  defaultMaxTokens: number;
  hybrid: HybridOptions | undefined;
  /**
   * The most last queries a request's hybrid options may ask for: a measuring prompt's last chunk
   * holds them all, so more than the server's prefill chunk (or its own lastQueries, if larger)
   * would take a turn past the server's bound on its work.
   */
  lastQueriesLimit: number;
}

/** A request the scheduler can run. */
export interface GenerationRequest {
  ids: number[];
  settings: MemberSettings;
  hybrid: ResolvedHybrid;
  stream: boolean;
  includeUsage: boolean;
}

/**
 * A completions body into a generation request; an ApiError (400, 404) says what is wrong.
 * @example const request = completionRequest(body, context);
 */
export function completionRequest(body: CompletionBody, context: RequestContext): GenerationRequest {
  if (body.echo) throw unsupported("echo");
  if (body.top_logprobs !== undefined && body.top_logprobs !== null)
    throw new ApiError(
      400,
      "top_logprobs is a chat completions parameter; completions take logprobs: <count>",
      "invalid_request_error",
      "top_logprobs",
    );
  const prompt =
    Array.isArray(body.prompt) && body.prompt.length === 1 && typeof body.prompt[0] !== "number" ? body.prompt[0] : body.prompt;
  return generationRequest(body, prompt as Prompt, body.max_tokens, body.logprobs ?? undefined, context);
}

/**
 * A chat completions body into a generation request, its messages rendered with the model's chat template.
 * @example const request = chatRequest(body, context);
 */
export function chatRequest(body: ChatBody, context: RequestContext): GenerationRequest {
  const topLogprobs = body.top_logprobs ?? undefined;
  if (topLogprobs !== undefined && !body.logprobs)
    throw new ApiError(400, "top_logprobs needs logprobs: true", "invalid_request_error", "top_logprobs");
  if (!context.tokenizer)
    throw new ApiError(400, "chat completions need the model's tokenizer and chat template; this server's model was loaded without one");
  const messages: ChatMessage[] = body.messages.map((m) => ({
    role: m.role,
    content: typeof m.content === "string" ? m.content : m.content.map((part) => part.text).join(""),
  }));
  const logprobs = body.logprobs ? (topLogprobs ?? 0) : undefined;
  return generationRequest(body, messages, body.max_completion_tokens ?? body.max_tokens, logprobs, context);
}

function unsupported(param: string): ApiError {
  return new ApiError(400, `${param} is not supported yet by this server`, "invalid_request_error", param, "unsupported_parameter");
}

/** Wraps the library's own checks (TypeError, RangeError, Error) as a 400 that keeps their message. */
function invalid<T>(param: string | null, check: () => T): T {
  try {
    return check();
  } catch (err) {
    throw new ApiError(400, (err as Error).message, "invalid_request_error", param);
  }
}

function generationRequest(
  body: GenerationBody,
  prompt: Prompt,
  maxTokens: number | null | undefined,
  logprobs: number | undefined,
  context: RequestContext,
): GenerationRequest {
  if (body.model !== context.modelName)
    throw new ApiError(
      404,
      `The model '${body.model}' does not exist; this server serves '${context.modelName}'`,
      "invalid_request_error",
      "model",
      "model_not_found",
    );
  if ((body.n ?? 1) !== 1) throw unsupported("n");
  for (const penalty of ["presence_penalty", "frequency_penalty"] as const)
    if (body[penalty])
      throw new ApiError(
        400,
        `${penalty} is not supported; use repetition_penalty`,
        "invalid_request_error",
        penalty,
        "unsupported_parameter",
      );
  const stop = body.stop === undefined || body.stop === null ? [] : typeof body.stop === "string" ? [body.stop] : body.stop;
  if (stop.length && !context.tokenizer)
    throw new ApiError(
      400,
      "stop strings need the model's tokenizer, and this server's model was loaded without one",
      "invalid_request_error",
      "stop",
    );
  const ids = invalid("prompt", () => promptIds(context.tokenizer, prompt, context.vocabSize, "prompt"));
  invalid("prompt", () => checkPromptFits(ids, 0, context.maxContext, "the prompt"));
  const generate = invalid(null, () =>
    checkGenerateOptions(
      {
        maxNewTokens: maxTokens ?? context.defaultMaxTokens,
        temperature: body.temperature ?? 1,
        topP: body.top_p ?? 1,
        topK: Math.max(0, body.top_k ?? 0),
        repetitionPenalty: body.repetition_penalty ?? 1,
        seed: body.seed ?? undefined,
        stop,
        logprobs,
      },
      "request",
    ),
  );
  const hybrid = invalid("lighttransfer.hybrid", () => resolveHybrid(body.lighttransfer?.hybrid ?? context.hybrid, context.layers));
  if (hybrid.lastQueries > context.lastQueriesLimit)
    throw new ApiError(
      400,
      `lighttransfer.hybrid.lastQueries must be at most ${context.lastQueriesLimit} (the server's prefill chunk, or its own lastQueries); got ${hybrid.lastQueries}`,
      "invalid_request_error",
      "lighttransfer.hybrid",
    );
  if (hybrid.mode !== "off" && context.slidingWindow !== null)
    throw new ApiError(
      400,
      `hybrid mode '${hybrid.mode}' needs full-attention layers, but this model uses a sliding window (${context.slidingWindow}); use mode 'off'`,
      "invalid_request_error",
      "lighttransfer.hybrid",
    );
  return {
    ids,
    settings: {
      sampling: generate.sampling,
      maxNewTokens: generate.maxNewTokens,
      stop: generate.stop,
      stopAtEos: !body.lighttransfer?.ignore_eos,
      maxContext: context.maxContext,
      prefillChunk: context.prefillChunk,
      logprobs: generate.logprobs,
    },
    hybrid,
    stream: body.stream ?? false,
    includeUsage: body.stream_options?.include_usage ?? false,
  };
}

/**
 * OpenAI's finish reasons: EOS and stop strings are "stop", the token and context limits "length".
 * @example openAiFinishReason("eos") // "stop"
 */
export function openAiFinishReason(reason: FinishReason): "stop" | "length" {
  return reason === "eos" || reason === "stop" ? "stop" : "length";
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/**
 * Usage of a request.
 * @example usage(12, 5) // { prompt_tokens: 12, completion_tokens: 5, total_tokens: 17 }
 */
export function usage(promptTokens: number, completionTokens: number): Usage {
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

/** Completions' (legacy) logprobs of some tokens: text offsets count from the completion's start. */
export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Array<Record<string, number>>;
  text_offset: number[];
}

/** Chat completions' logprobs of some tokens. */
export interface ChatLogprobs {
  content: Array<{
    token: string;
    logprob: number;
    bytes: number[] | null;
    top_logprobs: Array<{ token: string; logprob: number; bytes: number[] | null }>;
  }>;
  refusal: null;
}

/**
 * The library's logprobs of some tokens in an endpoint's wire format; `offset` is where the first
 * token's text starts in the completion (completions only).
 * @example wireLogprobs("chat", chunk.logprobs, 0)
 */
export function wireLogprobs(
  kind: "completion" | "chat",
  entries: readonly TokenLogprob[],
  offset: number,
): CompletionLogprobs | ChatLogprobs {
  const plain = ({ token, logprob, bytes }: { token: string; logprob: number; bytes: number[] | null }) => ({ token, logprob, bytes });
  if (kind === "chat") return { content: entries.map((e) => ({ ...plain(e), top_logprobs: e.top_logprobs.map(plain) })), refusal: null };
  const text_offset: number[] = [];
  for (const e of entries) {
    text_offset.push(offset);
    offset += e.token.length;
  }
  return {
    tokens: entries.map((e) => e.token),
    token_logprobs: entries.map((e) => e.logprob),
    top_logprobs: entries.map((e) => Object.fromEntries(e.top_logprobs.map((t) => [t.token, t.logprob]))),
    text_offset,
  };
}

type WireLogprobs = CompletionLogprobs | ChatLogprobs | null;

/** The fields every response object of one request shares. */
export interface ResponseHead {
  id: string;
  created: number;
  model: string;
}

/**
 * The objects one request answers with: its whole response, and the stream's chunks — text
 * chunks, one that ends the choice with its finish reason, and (stream_options.include_usage)
 * one with the usage and no choices. Chat streams open with the assistant's role.
 * @example const shape = responseShape("chat"); reply.send(shape.whole(head, text, "stop", usage(3, 4)));
 */
export function responseShape(kind: "completion" | "chat") {
  const object = kind === "completion" ? "text_completion" : "chat.completion.chunk";
  const choice = (delta: { role?: string; content?: string }, finish: "stop" | "length" | null, logprobs: WireLogprobs = null) =>
    kind === "completion"
      ? { index: 0, text: delta.content ?? "", logprobs, finish_reason: finish }
      : { index: 0, delta, logprobs, finish_reason: finish };
  return {
    whole: (head: ResponseHead, text: string, finish: "stop" | "length", used: Usage, logprobs: WireLogprobs) => ({
      ...head,
      object: kind === "completion" ? "text_completion" : "chat.completion",
      choices: [
        kind === "completion"
          ? { index: 0, text, logprobs, finish_reason: finish }
          : { index: 0, message: { role: "assistant", content: text }, logprobs, finish_reason: finish },
      ],
      usage: used,
    }),
    /** The chat stream's first chunk, or undefined for completions. */
    opening: (head: ResponseHead, withUsage: boolean) =>
      kind === "chat"
        ? { ...head, object, choices: [choice({ role: "assistant", content: "" }, null)], ...(withUsage ? { usage: null } : {}) }
        : undefined,
    text: (head: ResponseHead, text: string, withUsage: boolean, logprobs: WireLogprobs) => ({
      ...head,
      object,
      choices: [choice({ content: text }, null, logprobs)],
      ...(withUsage ? { usage: null } : {}),
    }),
    end: (head: ResponseHead, finish: "stop" | "length", withUsage: boolean) => ({
      ...head,
      object,
      choices: [choice({}, finish)],
      ...(withUsage ? { usage: null } : {}),
    }),
    usage: (head: ResponseHead, used: Usage) => ({ ...head, object, choices: [], usage: used }),
  };
}
