// The OpenAI-compatible HTTP server (fastify) over one loaded model, its requests
// batched continuously by the scheduler. POST /v1/completions and /v1/chat/completions, whole or
// streamed as server-sent events; GET /v1/models and /v1/models/{model}, /health and /metrics
// (Prometheus). Bad requests get OpenAI error bodies with the right status; a client that goes
// away cancels its request.
import { randomUUID } from "node:crypto";
import * as path from "node:path";
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifySchemaValidationError,
} from "fastify";
import { expectModel, type Model } from "../api/model";
import type { Tokenizer } from "../checkpoint/tokenizer";
import { integerIn, maxTokens, optionalBoolean, optionsObject, rejectUnknownOptions, show } from "../common/validate";
import type { TokenLogprob } from "../generate/logprobs";
import type { GenerateChunk } from "../generate/options";
import { type HybridOptions, resolveHybrid } from "../hybrid/options";
import { ServerMetrics } from "./metrics";
import {
  ApiError,
  chatRequest,
  completionRequest,
  type GenerationRequest,
  maxPromptBytes,
  modelNotFound,
  openAiFinishReason,
  type RequestContext,
  type ResponseHead,
  responseShape,
  TextOffsets,
  usage,
  wireLogprobs,
} from "./openai";
import { QueueFullError, Scheduler, SchedulerClosedError, type SchedulerEvents } from "./scheduler";
import { type ChatBody, type CompletionBody, chatBody, completionBody } from "./schemas";

/** createServer's options: the model's name, the scheduler's bounds, the requests' context and defaults, the body limit and the log. */
export interface ServerOptions {
  /** The model's name in requests and in GET /v1/models (default: its directory's name). */
  modelName?: string;
  /**
   * Requests that may wait for admission; more are answered 429 (default 256, at least 1: every
   * request waits for the scheduler's next turn, even on an idle server).
   */
  maxQueue?: number;
  /**
   * About the tokens per scheduler step: one per running sequence, the rest prompt tokens through
   * every layer, at least one prefill chunk through one layer (default 512; 64 on the CPU).
   */
  stepTokens?: number;
  /** Most sequences running at once (default 256). */
  maxRunning?: number;
  /** Most tokens (prompt + generated) per request (default: the model's max_position_embeddings). */
  maxContext?: number;
  /**
   * Prompt tokens per prefill chunk (default: model.prefillChunk, at most 16384; 512 on the CPU). A turn
   * runs at least one chunk through one layer, so a long chunk holds up every running stream's next
   * token for that long; the library's own default goes up to 65536, for the fastest single prefill.
   */
  prefillChunk?: number;
  /** Generated tokens when a request gives no max_tokens (default 256). */
  defaultMaxTokens?: number;
  /** Hybrid options of requests that give none in `lighttransfer.hybrid` (default: mode off). */
  hybrid?: HybridOptions;
  /** Largest request body in bytes; larger ones are answered 413 (default 16 MiB). */
  bodyLimit?: number;
  /** fastify's request log on stdout (default false). */
  logger?: boolean;
}

/** fastify's codes for a request it cannot read, as the codes a client of this API reads. */
const clientErrorCodes: Record<string, string> = {
  FST_ERR_CTP_BODY_TOO_LARGE: "request_too_large",
  FST_ERR_CTP_INVALID_MEDIA_TYPE: "unsupported_media_type",
  FST_ERR_CTP_INVALID_JSON_BODY: "invalid_json",
  FST_ERR_CTP_EMPTY_JSON_BODY: "invalid_json",
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: "invalid_content_length",
};

const serverOptionNames = [
  "modelName",
  "maxQueue",
  "stepTokens",
  "maxRunning",
  "maxContext",
  "prefillChunk",
  "defaultMaxTokens",
  "hybrid",
  "bodyLimit",
  "logger",
] satisfies Array<keyof ServerOptions>;

// The server's largest default chunk: the one its inter-token latencies were measured with
// (bench/README.md, "Serving under load").
const serverPrefillChunk = 16384;
// On the CPU a step's prefill runs on the event loop's thread, so the defaults keep a step short
// enough that other requests (and /health) are answered meanwhile (bench/README.md, "Serving on
// the CPU").
const cpuPrefillChunk = 512;
const cpuStepTokens = 64;

/**
 * The server over `model` (what createServer, in ./index.ts, loads on first use): a fastify
 * instance, not yet listening.
 * @example const app = await buildServer(model, { modelName: "llama" }); await app.listen({ port: 8080 });
 */
export async function buildServer(model: Model, options?: ServerOptions): Promise<FastifyInstance> {
  expectModel(model, "createServer");
  model.assertLive();
  const o = optionsObject(options, "createServer: options");
  rejectUnknownOptions(o, serverOptionNames, "createServer: options");
  if (o.modelName !== undefined && (typeof o.modelName !== "string" || o.modelName === ""))
    throw new TypeError(`createServer: modelName must be a non-empty string, got ${show(o.modelName)}`);
  const hybrid = resolveHybrid(o.hybrid, model.config.layers);
  const prefillChunk = integerIn(
    o.prefillChunk,
    "createServer: prefillChunk",
    1,
    2 ** 20,
    Math.min(model.decoder.prefillChunk, model.device === "cpu" ? cpuPrefillChunk : serverPrefillChunk),
  );
  const maxContext = integerIn(o.maxContext, "createServer: maxContext", 1, maxTokens, model.config.maxPositionEmbeddings);
  // A seed draws the same tokens on the same kind of device with the same weights and compute
  // dtypes (CUDA and the CPU round differently; the CPU computes in f32 over bf16 weights, say).
  const systemFingerprint = `lighttransfer-${model.device === "cpu" ? "cpu" : "cuda"}-${model.decoder.weights.embed.dtype}-${model.dtype}`;
  const context: RequestContext = {
    modelName: o.modelName ?? path.basename(path.resolve(model.dir)),
    vocabSize: model.config.vocabSize,
    layers: model.config.layers,
    slidingWindow: model.config.slidingWindow,
    tokenizer: model.optionalTokenizer,
    maxContext,
    maxPromptBytes: maxPromptBytes(model.optionalTokenizer, model.config.vocabSize, maxContext),
    prefillChunk,
    defaultMaxTokens: integerIn(o.defaultMaxTokens, "createServer: defaultMaxTokens", 0, maxTokens, 256),
    hybrid: o.hybrid,
    lastQueriesLimit: Math.max(prefillChunk, hybrid.lastQueries),
  };
  if (hybrid.mode !== "off" && model.config.slidingWindow !== null)
    throw new Error(`createServer: hybrid modes need full-attention layers, and this model uses a sliding window; leave hybrid out`);
  const bodyLimit = integerIn(o.bodyLimit, "createServer: bodyLimit", 1, 2 ** 31 - 1, 16 * 2 ** 20);
  // The scheduler reports to the metrics, which read the scheduler when scraped.
  const events: SchedulerEvents = {};
  const scheduler = new Scheduler(
    model,
    {
      maxQueue: integerIn(o.maxQueue, "createServer: maxQueue", 1, 2 ** 31 - 1, 256),
      stepTokens: integerIn(o.stepTokens, "createServer: stepTokens", 1, 2 ** 31 - 1, model.device === "cpu" ? cpuStepTokens : 512),
      maxRunning: integerIn(o.maxRunning, "createServer: maxRunning", 1, 2 ** 31 - 1, 256),
    },
    events,
  );
  const metrics = new ServerMetrics(scheduler, model.pool, () => model.decoder.stats);
  events.admitted = (seconds) => metrics.queueWait.observe(seconds);
  events.preempted = () => metrics.preemptions.inc();
  events.prefilled = (tokens) => metrics.promptTokens.inc(tokens);
  events.stepped = (seconds, kind) => metrics.stepTime.observe({ kind }, seconds);
  const app = Fastify({
    logger: optionalBoolean(o.logger, "createServer: logger") ?? false,
    bodyLimit,
    // Types as sent: "max_tokens": "5" is a 400, not 5.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
  });
  // The API takes JSON only: fastify's own text/plain parser would pass a JSON body sent as text on
  // as a string, which fails the schema ("body must be object") instead of naming the media type.
  app.removeContentTypeParser("text/plain");
  // Before the listener closes, which waits for every open connection: the requests still
  // running end now (503), so that close() does not wait for them to generate to their end.
  app.addHook("preClose", async () => scheduler.close());
  app.setErrorHandler((error: FastifyError, _request, reply) => {
    const api =
      error instanceof ApiError
        ? error
        : error.validation
          ? // fastify names a body field "body/stream"; a client sent "stream".
            new ApiError(400, error.message.replace(/(^|, )body\//g, "$1"), "invalid_request_error", validationParam(error.validation[0]))
          : error.statusCode && error.statusCode >= 400 && error.statusCode < 500
            ? new ApiError(error.statusCode, error.message, "invalid_request_error", null, clientErrorCodes[error.code] ?? null)
            : new ApiError(500, `internal error: ${error.message}`);
    // A server shutting down keeps no connection open: close() would wait for its keep-alive.
    if (api.code === "server_shutdown") void reply.header("connection", "close");
    void reply.status(api.status).send(api.body);
  });
  app.setNotFoundHandler((request, reply) => {
    void reply
      .status(404)
      .send(new ApiError(404, `no route ${request.method} ${request.url}`, "invalid_request_error", null, "not_found").body);
  });

  // A disposed model's tensors are freed, so a request would reach a kernel and fail there with a
  // 500 that names a tensor; 503 tells clients and load balancers this server is done for.
  const assertModelLive = () => {
    if (model.isDisposed)
      throw new ApiError(
        503,
        "the model this server runs was disposed (model.dispose()); the server cannot answer requests any more: close it and start one over a loaded model",
        "server_error",
        null,
        "model_disposed",
      );
  };
  app.get("/health", async () => {
    assertModelLive();
    return { status: "ok" };
  });
  const modelObject = { id: context.modelName, object: "model", created: 0, owned_by: "lighttransfer" };
  app.get("/v1/models", async () => ({ object: "list", data: [modelObject] }));
  // A wildcard, as model names may hold a "/" (an organization's), sent as it is or escaped.
  app.get("/v1/models/*", async (request) => {
    const id = (request.params as { "*": string })["*"];
    if (id !== context.modelName) throw modelNotFound(id, context.modelName);
    return modelObject;
  });
  app.get("/metrics", async (_request, reply) => {
    void reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });
  const serve = (endpoint: "completion" | "chat", toRequest: (body: never) => Promise<GenerationRequest>) =>
    async function handler(request: FastifyRequest, reply: FastifyReply) {
      const arrived = performance.now();
      assertModelLive();
      // The model may have been disposed while a long prompt was encoded (which fails the encoding).
      const generation = await toRequest(request.body as never).finally(assertModelLive);
      const peak = scheduler.peakPages(generation.ids.length, generation.hybrid);
      if (peak > model.pool.numPages)
        throw new ApiError(
          400,
          `the prompt (${generation.ids.length} tokens) needs ${peak} KV pages while it is prefilled, and the server's pool has ${model.pool.numPages}; ` +
            "shorten it, or use more lazy layers (lighttransfer.hybrid)",
          "invalid_request_error",
          generation.promptParam,
          "context_length_exceeded",
        );
      const run = new RequestRun(endpoint, generation, context.modelName, systemFingerprint, metrics, arrived, context.tokenizer);
      return run.answer(scheduler, reply);
    };
  app.post(
    "/v1/completions",
    { schema: { body: completionBody } },
    serve("completion", (body: CompletionBody) => completionRequest(body, context)),
  );
  app.post(
    "/v1/chat/completions",
    { schema: { body: chatBody } },
    serve("chat", (body: ChatBody) => chatRequest(body, context)),
  );
  return app;
}

/** The body field a schema mismatch is about, as OpenAI names it ("messages.0.content"); a missing one included. */
function validationParam(mismatch: FastifySchemaValidationError | undefined): string | null {
  if (!mismatch) return null;
  const at = mismatch.instancePath.split("/").filter(Boolean);
  const missing = mismatch.keyword === "required" ? (mismatch.params as { missingProperty?: string }).missingProperty : undefined;
  return [...at, ...(missing ? [missing] : [])].join(".") || null;
}

/** One request from submission to its last byte: whole or streamed, cancelled if its client goes away. */
class RequestRun {
  private readonly head: ResponseHead;
  private readonly shape: ReturnType<typeof responseShape>;
  private text = "";
  /** The logprobs of the tokens so far, when asked for. */
  private readonly logprobs: TokenLogprob[] = [];
  /** Where each of those tokens starts in the completion (completions' text_offset). */
  private readonly offsets: number[] = [];
  private readonly textOffsets: TextOffsets;
  private completionTokens = 0;
  private lastTokenAt: number | undefined;

  constructor(
    private readonly endpoint: "completion" | "chat",
    private readonly generation: GenerationRequest,
    modelName: string,
    systemFingerprint: string,
    private readonly metrics: ServerMetrics,
    private readonly arrived: number,
    tokenizer: Tokenizer | undefined,
  ) {
    this.head = {
      id: `${endpoint === "chat" ? "chatcmpl" : "cmpl"}-${randomUUID()}`,
      created: Math.floor(Date.now() / 1000),
      model: modelName,
      system_fingerprint: systemFingerprint,
    };
    this.shape = responseShape(endpoint);
    this.textOffsets = new TextOffsets(tokenizer);
  }

  answer(scheduler: Scheduler, reply: FastifyReply): Promise<unknown> {
    // A client that left while its prompt was encoded (long text, on the tokenizer's thread) closed
    // the connection before the listeners that cancel were on it: its request is not run at all.
    if (reply.raw.destroyed) {
      this.outcome("cancelled");
      reply.hijack();
      return Promise.resolve(undefined);
    }
    return this.generation.stream ? this.stream(scheduler, reply) : this.whole(scheduler, reply);
  }

  /**
   * A chunk's logprobs and, for completions, where its tokens start in the completion. With
   * logprobs asked for, every chunk but a last one of held-back text has them.
   */
  private place(chunk: GenerateChunk): { entries: TokenLogprob[]; offsets: number[] } | undefined {
    if (!chunk.logprobs) return undefined;
    const offsets = this.endpoint === "completion" ? this.textOffsets.place(chunk.logprobs, chunk.text) : [];
    return { entries: chunk.logprobs, offsets };
  }

  /** Timing and counts of a chunk's tokens. */
  private count(chunk: GenerateChunk): void {
    if (!chunk.tokens.length) return;
    const now = performance.now();
    if (this.lastTokenAt === undefined) this.metrics.timeToFirstToken.observe((now - this.arrived) / 1000);
    else this.metrics.interTokenLatency.observe((now - this.lastTokenAt) / 1000);
    this.lastTokenAt = now;
    this.completionTokens += chunk.tokens.length;
    this.metrics.generatedTokens.inc(chunk.tokens.length);
  }

  private outcome(outcome: string): void {
    this.metrics.requests.inc({ endpoint: this.endpoint, outcome });
  }

  /** The error a failed generation answers with, counted: 503 when the server is shutting down, else 500. */
  private failure(err: Error): ApiError {
    if (err instanceof SchedulerClosedError) {
      this.outcome("503");
      return new ApiError(503, err.message, "server_error", null, "server_shutdown");
    }
    this.outcome("500");
    return new ApiError(500, `generation failed: ${err.message}`);
  }

  private submit(scheduler: Scheduler, onChunk: (chunk: GenerateChunk) => void, onError: (err: Error) => void) {
    const { ids, settings, hybrid } = this.generation;
    try {
      return scheduler.submit({ ids, settings, hybrid, onChunk, onError });
    } catch (err) {
      if (err instanceof QueueFullError) {
        this.outcome("429");
        throw new ApiError(429, err.message, "rate_limit_error", null, "queue_full");
      }
      // A request whose body came in after close() began.
      if (err instanceof SchedulerClosedError) throw this.failure(err);
      throw err;
    }
  }

  private whole(scheduler: Scheduler, reply: FastifyReply): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const ticket = this.submit(
        scheduler,
        (chunk) => {
          this.count(chunk);
          this.text += chunk.text;
          const placed = this.place(chunk);
          if (placed) {
            this.logprobs.push(...placed.entries);
            this.offsets.push(...placed.offsets);
          }
          if (!chunk.finishReason) return;
          this.outcome(chunk.finishReason);
          const used = usage(this.generation.ids.length, this.completionTokens);
          const logprobs =
            this.generation.settings.logprobs === undefined ? null : wireLogprobs(this.endpoint, this.logprobs, this.offsets);
          resolve(this.shape.whole(this.head, this.text, openAiFinishReason(chunk.finishReason), used, logprobs));
        },
        (err) => reject(this.failure(err)),
      );
      reply.raw.on("close", () => {
        if (reply.raw.writableFinished) return;
        ticket.cancel();
        this.outcome("cancelled");
      });
    });
  }

  private async stream(scheduler: Scheduler, reply: FastifyReply): Promise<void> {
    const withUsage = this.generation.includeUsage;
    let ended = false;
    const raw = reply.raw;
    const send = (data: unknown) => raw.write(`data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`);
    const finish = () => {
      ended = true;
      send("[DONE]");
      raw.end();
    };
    const ticket = this.submit(
      scheduler,
      (chunk) => {
        this.count(chunk);
        const placed = this.place(chunk);
        // A chunk per token, its text possibly "" (part of a character, a token decoding to nothing),
        // so a client can time every token; held-back text comes in a later chunk.
        if (chunk.tokens.length || chunk.text) {
          const logprobs = placed ? wireLogprobs(this.endpoint, placed.entries, placed.offsets) : null;
          send(this.shape.text(this.head, chunk.text, withUsage, logprobs));
        }
        if (!chunk.finishReason) return;
        this.outcome(chunk.finishReason);
        send(this.shape.end(this.head, openAiFinishReason(chunk.finishReason), withUsage));
        if (withUsage) send(this.shape.usage(this.head, usage(this.generation.ids.length, this.completionTokens)));
        finish();
      },
      (err) => {
        send(this.failure(err).body);
        finish();
      },
    );
    reply.hijack();
    raw.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
    // The client learns at once that its request was accepted, before the first token.
    raw.flushHeaders();
    const opening = this.shape.opening(this.head, withUsage);
    if (opening) send(opening);
    raw.on("close", () => {
      if (ended) return;
      ticket.cancel();
      this.outcome("cancelled");
    });
  }
}
