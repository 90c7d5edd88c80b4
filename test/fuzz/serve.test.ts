// The OpenAI-compatible server under odd request bodies: completions and chat completions, whole
// and streamed, with any field of the wrong type or at an edge JSON can write (1e400 parses as
// Infinity), unknown fields and junk in the library's own `lighttransfer` field. Each answer is a
// well-formed 200 or a 4xx with an OpenAI error body that says what is wrong, never a 5xx, and the
// server stays healthy with every KV page back in its pool (test/fuzz/cases/serve.ts).
import * as path from "node:path";
import fc from "fast-check";
import type { Json, ServeCase } from "./cases/serve";
import { propertyTest } from "./harness/run-cases";

const modulePath = path.join(__dirname, "cases", "serve.ts");
const options = { modulePath, batchSize: 100, caseTimeoutMs: 30000 };

const raw = (literal: string): Json => ({ $raw: literal });
const number: fc.Arbitrary<Json> = fc.oneof(
  fc.constantFrom<Json>(0, -1, 0.5, 1.5, 2 ** 31, 2 ** 53, 1e308, -1e308, 5e-324, 1e-300),
  fc.constantFrom(raw("1e400"), raw("-1e400"), raw("1e-400"), raw("-0"), raw("9007199254740993"), raw("123456789012345678901234567890")),
  fc.integer({ min: -5, max: 300 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
);
const odd: fc.Arbitrary<Json> = fc.oneof(
  number,
  fc.constantFrom<Json>("4", "", "0x10", " 7 ", "NaN", null, true, false, [], [4], {}, { valueOf: 4 }),
  fc.string({ maxLength: 8 }),
  fc.string({ unit: "binary", maxLength: 6 }),
  fc.array(fc.oneof(fc.integer({ min: -2, max: 400 }), fc.string({ maxLength: 3 })), { maxLength: 4 }),
);
const tokenIds = fc.array(fc.integer({ min: 0, max: 383 }), { minLength: 1, maxLength: 24 });
const prompt: fc.Arbitrary<Json> = fc.oneof(
  { arbitrary: fc.string({ maxLength: 40 }), weight: 3 },
  { arbitrary: fc.string({ unit: "binary", maxLength: 16 }), weight: 2 },
  { arbitrary: tokenIds, weight: 3 },
  { arbitrary: odd, weight: 1 },
);
/** Mostly what a client would send, at times an edge number (past the schema's type check, into the library), at times anything. */
const field = (usual: fc.Arbitrary<Json>, numeric = true): fc.Arbitrary<Json> =>
  numeric
    ? fc.oneof({ arbitrary: usual, weight: 4 }, { arbitrary: number, weight: 2 }, { arbitrary: odd, weight: 1 })
    : fc.oneof({ arbitrary: usual, weight: 4 }, { arbitrary: odd, weight: 1 });
const message: fc.Arbitrary<Json> = fc.oneof(
  { arbitrary: fc.record({ role: fc.constantFrom("system", "user", "assistant"), content: fc.string({ maxLength: 24 }) }), weight: 6 },
  {
    arbitrary: fc.record({
      role: fc.oneof(fc.constantFrom("user", "tool", ""), odd),
      content: fc.oneof(
        fc.string({ maxLength: 12 }),
        fc.array(fc.record({ type: fc.constant("text"), text: fc.oneof(fc.string({ maxLength: 8 }), odd) }), { maxLength: 2 }),
        odd,
      ),
    }),
    weight: 1,
  },
  { arbitrary: odd, weight: 1 },
);
const hybrid: fc.Arbitrary<Json> = fc.oneof(
  fc.record(
    {
      mode: fc.oneof(fc.constantFrom("auto", "fixed", "off", "streaming-all", "random", "bogus"), odd),
      fullLayers: field(fc.constantFrom(0.5, 1, 2, "50%")),
      sink: field(fc.integer({ min: 0, max: 8 })),
      window: field(fc.integer({ min: 1, max: 64 })),
      lazyLayers: field(fc.array(fc.integer({ min: -1, max: 4 }), { maxLength: 3 }), false),
      seed: field(fc.integer({ min: 0, max: 9 })),
    },
    { requiredKeys: [] },
  ),
  odd,
);
/** The fields a request may set, each the server reads (or passes over); a case sets a few. */
const fields: Record<string, fc.Arbitrary<Json>> = {
  model: fc.oneof({ arbitrary: fc.constant("llama-tiny"), weight: 4 }, { arbitrary: odd, weight: 1 }),
  max_tokens: field(fc.integer({ min: 0, max: 12 })),
  max_completion_tokens: field(fc.integer({ min: 0, max: 12 })),
  temperature: field(fc.constantFrom(0, 0.7, 1.3)),
  top_p: field(fc.constantFrom(0.1, 0.9, 1)),
  top_k: field(fc.constantFrom(-1, 0, 1, 40)),
  repetition_penalty: field(fc.constantFrom(1, 1.3)),
  presence_penalty: field(fc.constant(0)),
  frequency_penalty: field(fc.constant(0)),
  seed: field(fc.integer({ min: 0, max: 99 })),
  stop: field(
    fc.oneof(fc.string({ minLength: 1, maxLength: 3 }), fc.array(fc.string({ minLength: 1, maxLength: 3 }), { maxLength: 3 })),
    false,
  ),
  n: field(fc.constant(1)),
  stream: field(fc.boolean(), false),
  stream_options: field(fc.record({ include_usage: field(fc.boolean(), false) }), false),
  logprobs: field(fc.oneof(fc.boolean(), fc.integer({ min: 0, max: 5 }))),
  top_logprobs: field(fc.integer({ min: 0, max: 5 })),
  echo: field(fc.boolean(), false),
  user: field(fc.string({ maxLength: 8 }), false),
  lighttransfer: field(fc.record({ hybrid, ignore_eos: field(fc.boolean(), false) }, { requiredKeys: [] }), false),
  unknown_field: odd,
};

const serveCase: fc.Arbitrary<ServeCase> = fc
  .record({
    route: fc.constantFrom("completions" as const, "chat" as const),
    prompt,
    messages: fc.oneof({ arbitrary: fc.array(message, { minLength: 1, maxLength: 3 }), weight: 6 }, { arbitrary: odd, weight: 1 }),
    leaveOut: fc.oneof({ arbitrary: fc.constant(false), weight: 9 }, { arbitrary: fc.constant(true), weight: 1 }),
    chosen: fc.subarray(Object.keys(fields), { maxLength: 5 }),
    values: fc.record(fields),
  })
  .map(({ route, prompt, messages, leaveOut, chosen, values }) => {
    // Valid by default (model and a few tokens), then the chosen fields as drawn.
    const body: Record<string, Json> = { model: "llama-tiny", max_tokens: 4 };
    if (!leaveOut) body[route === "chat" ? "messages" : "prompt"] = route === "chat" ? messages : prompt;
    for (const key of chosen) body[key] = values[key];
    return { route, body };
  });

propertyTest<ServeCase>(
  "request bodies of every kind get a well-formed 200 or a 4xx that says what is wrong; the server stays up and frees its pages",
  "request body",
  serveCase,
  0,
  300,
  options,
);
