// JSON schemas of the OpenAI-compatible request bodies: fastify validates every request against
// them before a handler sees it (a mismatch is a 400 naming the field). Only the fields the server
// acts on are described (those it refuses too, so a wrong type is named as such); other OpenAI
// fields pass through unread.
import { maxTokens } from "../common/validate";
import { maxTopLogprobs } from "../generate/logprobs";

/** A field that may also be null (OpenAI clients send null for "not given"); one type keeps ajv's message short. */
const nullable = (schema: Record<string, unknown>) =>
  typeof schema.type === "string" ? { ...schema, type: [schema.type, "null"] } : { anyOf: [schema, { type: "null" }] };
const tokenIds = { type: "array", items: { type: "integer", minimum: 0 }, minItems: 1 };
// The library's own bounds, here so that a request past them is refused naming the OpenAI field.
const tokenCount = nullable({ type: "integer", minimum: 0, maximum: maxTokens });
const logprobCount = nullable({ type: "integer", minimum: 0, maximum: maxTopLogprobs });

/** The fields completions and chat completions share. */
const generationFields = {
  model: { type: "string", minLength: 1 },
  max_tokens: tokenCount,
  temperature: nullable({ type: "number", minimum: 0 }),
  // 0 (as OpenAI allows) keeps only the likeliest token: greedy.
  top_p: nullable({ type: "number", minimum: 0, maximum: 1 }),
  // -1 (as in vLLM) and 0 both mean "all tokens".
  top_k: nullable({ type: "integer", minimum: -1 }),
  repetition_penalty: nullable({ type: "number", exclusiveMinimum: 0 }),
  presence_penalty: nullable({ type: "number" }),
  frequency_penalty: nullable({ type: "number" }),
  seed: nullable({ type: "integer", minimum: -(2 ** 63), maximum: 2 ** 63 - 1 }),
  stop: nullable({
    anyOf: [
      { type: "string", minLength: 1 },
      { type: "array", items: { type: "string", minLength: 1 }, maxItems: 16 },
    ],
  }),
  n: nullable({ type: "integer", minimum: 1 }),
  stream: nullable({ type: "boolean" }),
  stream_options: nullable({ type: "object", properties: { include_usage: { type: "boolean" } } }),
  top_logprobs: logprobCount,
  user: nullable({ type: "string" }),
  logit_bias: nullable({ type: "object" }),
  response_format: nullable({ type: "object", required: ["type"], properties: { type: { type: "string" } } }),
  lighttransfer: {
    type: "object",
    properties: { hybrid: { type: "object" }, ignore_eos: { type: "boolean" } },
    additionalProperties: false,
  },
} as const;

/** POST /v1/completions: a prompt as text or token ids (one prompt per request). */
export const completionBody = {
  type: "object",
  required: ["model", "prompt"],
  properties: {
    ...generationFields,
    prompt: {
      anyOf: [{ type: "string" }, tokenIds, { type: "array", minItems: 1, maxItems: 1, items: { anyOf: [{ type: "string" }, tokenIds] } }],
    },
    echo: nullable({ type: "boolean" }),
    logprobs: logprobCount,
    suffix: nullable({ type: "string" }),
    best_of: nullable({ type: "integer", minimum: 1 }),
  },
} as const;

const messageContent = {
  anyOf: [
    { type: "string" },
    {
      type: "array",
      // Parts of other types (images, audio) pass the schema and are refused as unsupported.
      items: { type: "object", required: ["type"], properties: { type: { type: "string" }, text: { type: "string" } } },
    },
  ],
};

/** POST /v1/chat/completions: messages rendered with the model's chat template. */
export const chatBody = {
  type: "object",
  required: ["model", "messages"],
  properties: {
    ...generationFields,
    max_completion_tokens: tokenCount,
    messages: {
      type: "array",
      minItems: 1,
      items: {
        type: "object",
        required: ["role", "content"],
        properties: { role: { enum: ["system", "developer", "user", "assistant"] }, content: messageContent },
      },
    },
    logprobs: nullable({ type: "boolean" }),
    tools: nullable({ type: "array" }),
    tool_choice: nullable({ anyOf: [{ type: "string" }, { type: "object" }] }),
    functions: nullable({ type: "array" }),
    function_call: nullable({ anyOf: [{ type: "string" }, { type: "object" }] }),
  },
} as const;

/** A validated completions body (the fields read; others may be there). */
export interface CompletionBody extends GenerationBody {
  prompt: string | number[] | [string | number[]];
  echo?: boolean | null;
  logprobs?: number | null;
  suffix?: string | null;
  best_of?: number | null;
}

/** A validated chat completions body. */
export interface ChatBody extends GenerationBody {
  messages: Array<{ role: string; content: string | Array<{ type: string; text?: string }> }>;
  max_completion_tokens?: number | null;
  logprobs?: boolean | null;
  tools?: unknown[] | null;
  tool_choice?: string | object | null;
  functions?: unknown[] | null;
  function_call?: string | object | null;
}

export interface GenerationBody {
  model: string;
  max_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  repetition_penalty?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
  n?: number | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  top_logprobs?: number | null;
  logit_bias?: Record<string, unknown> | null;
  response_format?: { type: string } | null;
  /** The extension field: hybrid options, and generating past EOS (benchmarks that want exactly max_tokens). */
  lighttransfer?: { hybrid?: Record<string, unknown>; ignore_eos?: boolean };
}
