// The OpenAI wire format: a validated request body into what the scheduler runs (prompt ids,
// stop rules, sampling, hybrid options), and generated chunks into completion and chat
// completion objects, whole or as server-sent-event chunks, with usage. Errors carry the status
// and the OpenAI error body.

import { EncoderThreadError } from "../checkpoint/encoder-thread";
import type { ChatMessage, Tokenizer } from "../checkpoint/tokenizer";
import type { TokenLogprob, TopLogprob } from "../generate/logprobs";
import { checkGenerateOptions, type FinishReason } from "../generate/options";
import { checkPromptFits, promptIdsAsync } from "../generate/prompt";
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

/** The 404 OpenAI gives for a model it does not serve. */
export function modelNotFound(id: string, served: string): ApiError {
  return new ApiError(
    404,
    `The model '${id}' does not exist; this server serves '${served}'`,
    "invalid_request_error",
    "model",
    "model_not_found",
  );
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
  /** The most UTF-8 bytes of prompt text that maxContext tokens can stand for (maxPromptBytes). */
  maxPromptBytes: number;
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

/**
 * The most UTF-8 bytes of prompt text that `maxContext` tokens of `tokenizer` can stand for: a
 * longer text is certainly too long, and is refused before the tokenizer spends seconds on it
 * (blocking every stream) only to count it. Infinite without a tokenizer, which takes no text.
 * @example const limit = maxPromptBytes(model.optionalTokenizer, model.config.vocabSize, 4096);
 */
export function maxPromptBytes(tokenizer: Tokenizer | undefined, vocabSize: number, maxContext: number): number {
  if (!tokenizer) return Number.POSITIVE_INFINITY;
  let longest = 0;
  for (let id = 0; id < vocabSize; id++) longest = Math.max(longest, tokenizer.tokenBytes(id).length);
  // A token stands for its bytes and one more: a decoder strips the space that begins a piece
  // decoded alone ("▁hello" as "hello"). And 4 times that, for normalizers that fold text before
  // it is split: NFKC turns the 4-byte "𝐀" into "A", NFC three jamo into one syllable.
  return maxContext * 4 * (longest + 1);
}

/** A request the scheduler can run. */
export interface GenerationRequest {
  ids: number[];
  /** The body field that holds the prompt, named by errors about it. */
  promptParam: "prompt" | "messages";
  settings: MemberSettings;
  hybrid: ResolvedHybrid;
  stream: boolean;
  includeUsage: boolean;
}

/**
 * A completions body into a generation request; an ApiError (400, 404) says what is wrong. Long
 * prompt text is encoded on the tokenizer's worker thread.
 * @example const request = await completionRequest(body, context);
 */
export async function completionRequest(body: CompletionBody, context: RequestContext): Promise<GenerationRequest> {
  if (body.echo) throw unsupported("echo");
  if (body.suffix) throw unsupported("suffix");
  if ((body.best_of ?? 1) > 1) throw unsupported("best_of");
  if (body.top_logprobs !== undefined && body.top_logprobs !== null)
    throw new ApiError(
      400,
      "top_logprobs is a chat completions parameter; completions take logprobs: <count>",
      "invalid_request_error",
      "top_logprobs",
    );
  const prompt = (
    Array.isArray(body.prompt) && body.prompt.length === 1 && typeof body.prompt[0] !== "number" ? body.prompt[0] : body.prompt
  ) as string | number[];
  return generationRequest(body, "prompt", body.max_tokens, body.logprobs ?? undefined, context, () =>
    promptIdsAsync(context.tokenizer, prompt, context.vocabSize, "prompt", {
      checkText: (text) => checkPromptBytes(text, "prompt", context),
    }),
  );
}

/**
 * A chat completions body into a generation request, its messages rendered with the model's chat
 * template (and long ones encoded on the tokenizer's worker thread).
 * @example const request = await chatRequest(body, context);
 */
export async function chatRequest(body: ChatBody, context: RequestContext): Promise<GenerationRequest> {
  const topLogprobs = body.top_logprobs ?? undefined;
  if (topLogprobs !== undefined && !body.logprobs)
    throw new ApiError(400, "top_logprobs needs logprobs: true", "invalid_request_error", "top_logprobs");
  if (body.tools?.length) throw unsupported("tools");
  if ((body.tool_choice ?? "none") !== "none") throw unsupported("tool_choice");
  if (body.functions?.length) throw unsupported("functions");
  if ((body.function_call ?? "none") !== "none") throw unsupported("function_call");
  const tokenizer = context.tokenizer;
  if (!tokenizer)
    throw new ApiError(400, "chat completions need the model's tokenizer and chat template; this server's model was loaded without one");
  const problem = tokenizer.chatTemplateProblem;
  if (problem)
    throw new ApiError(
      400,
      `model '${context.modelName}' cannot render chat messages: ${problem}. Send its prompt as text to POST /v1/completions instead`,
      "invalid_request_error",
      "messages",
      "chat_template_unavailable",
    );
  const messages: ChatMessage[] = body.messages.map((m, i) => ({
    // OpenAI's newer name for the system role, which chat templates do not know.
    role: m.role === "developer" ? "system" : m.role,
    content: typeof m.content === "string" ? m.content : m.content.map((part) => partText(part, `messages.${i}.content`)).join(""),
  }));
  const logprobs = body.logprobs ? (topLogprobs ?? 0) : undefined;
  const maxTokens = body.max_completion_tokens ?? body.max_tokens;
  return generationRequest(body, "messages", maxTokens, logprobs, context, () =>
    promptIdsAsync(tokenizer, messages, context.vocabSize, "messages", {
      checkText: (text) => checkPromptBytes(text, "messages", context),
    }),
  );
}

/** A content part's text; a part of another type (an image, audio) is refused as unsupported. */
function partText(part: { type: string; text?: string }, param: string): string {
  if (part.type !== "text")
    throw new ApiError(
      400,
      `${param}: content parts of type ${JSON.stringify(part.type)} are not supported by this server (text parts only)`,
      "invalid_request_error",
      param,
      "unsupported_parameter",
    );
  if (typeof part.text !== "string") throw new ApiError(400, `${param}: a text part needs its text`, "invalid_request_error", param);
  return part.text;
}

function unsupported(param: string): ApiError {
  return new ApiError(400, `${param} is not supported yet by this server`, "invalid_request_error", param, "unsupported_parameter");
}

function contextLengthExceeded(message: string, param: string): ApiError {
  return new ApiError(400, message, "invalid_request_error", param, "context_length_exceeded");
}

/** What a client whose prompt is too long for the server's maxContext can do besides shortening it. */
const serverLargerContext = "ask for a server started with a larger maxContext (its --max-context flag, or createServer's maxContext)";

/** Refuses prompt text (plain or rendered) of more bytes than maxContext tokens can stand for. */
function checkPromptBytes(text: string, param: string, context: RequestContext): void {
  const bytes = Buffer.byteLength(text);
  if (bytes > context.maxPromptBytes)
    throw contextLengthExceeded(
      `the prompt has ${bytes} bytes of text, more than maxContext ${context.maxContext} tokens can hold (${context.maxPromptBytes} bytes). ` +
        `Shorten the prompt or ${serverLargerContext}`,
      param,
    );
}

/**
 * An error of the library's own checks (TypeError, RangeError, Error) as a 400 that keeps its
 * message; a 500 when the tokenizer's worker thread failed rather than the request.
 */
function invalidRequest(err: unknown, param: string | null): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof EncoderThreadError) return new ApiError(500, (err as Error).message);
  return new ApiError(400, (err as Error).message, "invalid_request_error", param);
}

/** Wraps the library's own checks as a 400 (invalidRequest). */
function invalid<T>(param: string | null, check: () => T): T {
  try {
    return check();
  } catch (err) {
    throw invalidRequest(err, param);
  }
}

/** invalid, for a check that settles later. */
async function invalidAsync<T>(param: string | null, check: () => Promise<T>): Promise<T> {
  try {
    return await check();
  } catch (err) {
    throw invalidRequest(err, param);
  }
}

/** The checks and settings both endpoints share; `encode` gives the prompt's ids, once the cheaper checks pass. */
async function generationRequest(
  body: GenerationBody,
  promptParam: "prompt" | "messages",
  maxTokens: number | null | undefined,
  logprobs: number | undefined,
  context: RequestContext,
  encode: () => Promise<number[]>,
): Promise<GenerationRequest> {
  if (body.model !== context.modelName) throw modelNotFound(body.model, context.modelName);
  if ((body.n ?? 1) !== 1) throw unsupported("n");
  if (body.stream_options && !body.stream)
    throw new ApiError(400, "stream_options is only for a streamed request (stream: true)", "invalid_request_error", "stream_options");
  for (const penalty of ["presence_penalty", "frequency_penalty"] as const)
    if (body[penalty])
      throw new ApiError(
        400,
        `${penalty} is not supported; use repetition_penalty`,
        "invalid_request_error",
        penalty,
        "unsupported_parameter",
      );
  if (body.logit_bias && Object.keys(body.logit_bias).length) throw unsupported("logit_bias");
  if ((body.response_format?.type ?? "text") !== "text") throw unsupported("response_format");
  const stop = body.stop === undefined || body.stop === null ? [] : typeof body.stop === "string" ? [body.stop] : body.stop;
  if (stop.length && !context.tokenizer)
    throw new ApiError(
      400,
      "stop strings need the model's tokenizer, and this server's model was loaded without one",
      "invalid_request_error",
      "stop",
    );
  const ids = await invalidAsync(promptParam, encode);
  try {
    checkPromptFits(ids, 0, context.maxContext, "the prompt", serverLargerContext);
  } catch (err) {
    if (ids.length === 0) throw new ApiError(400, (err as Error).message, "invalid_request_error", promptParam);
    throw contextLengthExceeded((err as Error).message, promptParam);
  }
  // The schema holds every field to the library's bounds, so these checks name the fields already.
  const generate = invalid(null, () =>
    checkGenerateOptions(
      {
        maxNewTokens: maxTokens ?? context.defaultMaxTokens,
        // top_p 0 keeps the likeliest token alone, as greedy decoding does; the sampler takes (0, 1].
        temperature: body.top_p === 0 ? 0 : (body.temperature ?? 1),
        topP: body.top_p || 1,
        topK: Math.max(0, body.top_k ?? 0),
        repetitionPenalty: body.repetition_penalty ?? 1,
        // OpenAI takes any int64; the sampler uses a seed's low 32 bits, which JSON's double keeps exactly.
        seed: body.seed === null || body.seed === undefined ? undefined : Number(BigInt.asUintN(32, BigInt(body.seed))),
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
    promptParam,
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

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * A token's name in completions' logprobs: its text, or, when its bytes are not whole UTF-8 text
 * (part of a character), "bytes:" and the bytes as OpenAI writes them, so that two such tokens do
 * not both read "\uFFFD".
 * @example completionTokenName({ token: "\uFFFD", id: 3, logprob: -1, bytes: [0xe2, 0x80] }) // "bytes:\\xe2\\x80"
 */
export function completionTokenName(t: TopLogprob): string {
  if (t.bytes === null) return t.token;
  try {
    utf8.decode(Uint8Array.from(t.bytes));
    return t.token;
  } catch {
    return `bytes:${t.bytes.map((b) => `\\x${b.toString(16).padStart(2, "0")}`).join("")}`;
  }
}

/**
 * Completions' text_offset: where each generated token's text starts in the completion, as the
 * chunks come. A chunk's text is not its token's: the text stream holds text back (part of a
 * character, a space its clean-up may drop, a possible start of a stop string) and leaves special
 * tokens out. So the tokens' texts are put together here as the stream does it, a token of part of
 * a character placed where that character starts; where the completion's text differs from them
 * (the tokenizer's clean-up turned " ." into "."), it is taken as it is from there on.
 * @example const offsets = new TextOffsets(tokenizer); const at = offsets.place(chunk.logprobs, chunk.text);
 */
export class TextOffsets {
  /** The completion's text so far. */
  private emitted = "";
  /** The text of the tokens so far: the completion's, then what the text stream still holds back. */
  private decoded = "";
  /** The bytes of a character begun by tokens of part of it. */
  private pending: number[] = [];

  constructor(private readonly tokenizer: Tokenizer | undefined) {}

  /**
   * The offsets of a chunk's tokens, given its text, within the text so far: a token whose text is
   * still held back starts where that text ends (a stream cannot take an offset back, and text
   * held back before a stop string is never sent), so streamed and whole offsets agree.
   */
  place(entries: readonly TokenLogprob[], text: string): number[] {
    const start = this.emitted.length;
    this.emitted += text;
    const end = this.emitted.length;
    const placed = entries.map((e) => {
      if (completionTokenName(e) === e.token) {
        // A special token is left out of the text, so bytes on either side of it go together.
        const own = this.tokenizer?.decode([e.id], { skipSpecialTokens: true }) ?? "";
        if (own) this.endBrokenCharacter(undefined);
        this.decoded += own;
        return { at: this.decoded.length - own.length, own };
      }
      const bytes = e.bytes ?? [];
      this.endBrokenCharacter(bytes[0]);
      const at = this.decoded.length;
      for (const [i, b] of bytes.entries()) this.addByte(b, i > 0);
      return { at, own: "" };
    });
    let offsets = placed.map((p) => p.at);
    if (this.decoded.slice(start, end) !== text) {
      this.decoded = this.emitted;
      offsets = placed.map(({ at, own }) => (own && text.endsWith(own) ? end - own.length : at));
    }
    return offsets.map((at) => Math.min(at, end));
  }

  /** A character begun that `byte` (undefined: text) does not go on is over: it shows as one U+FFFD. */
  private endBrokenCharacter(byte: number | undefined): void {
    if (!this.pending.length) return;
    if (byte !== undefined && [...new TextDecoder().decode(Uint8Array.from([...this.pending, byte]))].length === 1) return;
    this.decoded += "\uFFFD";
    this.pending = [];
  }

  /** A byte of a token of part of a character; one after the token's first may end a character it began. */
  private addByte(byte: number, checkBroken: boolean): void {
    if (checkBroken) this.endBrokenCharacter(byte);
    this.pending.push(byte);
    // A whole character, or U+FFFD for a byte no character begins with; "" while the character goes on.
    const shown = new TextDecoder().decode(Uint8Array.from(this.pending), { stream: true });
    if (shown) {
      this.decoded += shown;
      this.pending = [];
    }
  }
}

/**
 * The library's logprobs of some tokens in an endpoint's wire format; `offsets` are where each
 * token starts in the completion (TextOffsets; completions only).
 * @example wireLogprobs("chat", chunk.logprobs, [])
 */
export function wireLogprobs(
  kind: "completion" | "chat",
  entries: readonly TokenLogprob[],
  offsets: readonly number[],
): CompletionLogprobs | ChatLogprobs {
  const plain = ({ token, logprob, bytes }: { token: string; logprob: number; bytes: number[] | null }) => ({ token, logprob, bytes });
  if (kind === "chat") return { content: entries.map((e) => ({ ...plain(e), top_logprobs: e.top_logprobs.map(plain) })), refusal: null };
  // Alternatives come likeliest first: where two share a name, the likelier keeps it.
  const alternatives = (top: readonly TopLogprob[]) => {
    const named = new Map<string, number>();
    for (const t of top) {
      const name = completionTokenName(t);
      if (!named.has(name)) named.set(name, t.logprob);
    }
    return Object.fromEntries(named);
  };
  return {
    tokens: entries.map(completionTokenName),
    token_logprobs: entries.map((e) => e.logprob),
    top_logprobs: entries.map((e) => alternatives(e.top_logprobs)),
    text_offset: [...offsets],
  };
}

type WireLogprobs = CompletionLogprobs | ChatLogprobs | null;

/** The fields every response object of one request shares. */
export interface ResponseHead {
  id: string;
  created: number;
  model: string;
  /** The backend a seed's draws depend on: the library, the device kind and the dtype. */
  system_fingerprint: string;
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
          : { index: 0, message: { role: "assistant", content: text, refusal: null, annotations: [] }, logprobs, finish_reason: finish },
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
