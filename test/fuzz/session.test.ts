// Sessions under fire: session and generate options of every kind (wrong types, NaN, huge,
// negative, getters, non-AbortSignal signals, null), and dispose(), abort, return() and throw()
// at every point of a generation (after k chunks, while a decode step is pending, between batch
// steps), and a KV pool that runs out mid-prefill at every layer. Afterwards the pool and the
// live tensor bytes are back at their baseline and a fresh session generates transformers'
// tokens; an interrupted session goes on exactly as one that was never interrupted.
import * as path from "node:path";
import fc from "fast-check";
import type { SessionCase } from "./cases/session";
import { propertyTest } from "./harness/run-cases";
import { oddValue } from "./harness/values";

const modulePath = path.join(__dirname, "cases", "session.ts");
const options = { modulePath, batchSize: 60, caseTimeoutMs: 30000 };

const maybe = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined, freq: 2 });
const intish = (lo: number, hi: number) => fc.oneof(fc.integer({ min: lo, max: hi }), oddValue);
const hybrid = fc.record(
  {
    mode: fc.oneof(fc.constantFrom("auto", "fixed", "off", "streaming-all", "random", "calibrate", "bogus"), oddValue),
    fullLayers: maybe(fc.oneof(fc.constantFrom(0.5, 1, 2, 3, "50%", "101%", "x%"), oddValue)),
    sink: maybe(intish(0, 8)),
    window: maybe(intish(1, 64)),
    lastQueries: maybe(intish(1, 16)),
    lazyLayers: maybe(fc.oneof(fc.array(fc.integer({ min: -1, max: 4 }), { maxLength: 3 }), oddValue)),
    prefill: maybe(fc.constantFrom("full", "streaming", "neither")),
    seed: maybe(intish(0, 9)),
  },
  { requiredKeys: [] },
);
const sessionOptions = fc.record(
  {
    maxContext: maybe(intish(1, 4096)),
    prefillChunk: maybe(intish(1, 64)),
    hybrid: maybe(fc.oneof(hybrid, oddValue)),
  },
  { requiredKeys: [] },
);
const generateOptions = fc.record(
  {
    maxNewTokens: maybe(intish(0, 12)),
    temperature: maybe(fc.oneof(fc.constantFrom(0, 0.7, 1.5), oddValue)),
    topK: maybe(intish(0, 50)),
    topP: maybe(fc.oneof(fc.constantFrom(0.9, 1), oddValue)),
    repetitionPenalty: maybe(fc.oneof(fc.constantFrom(1, 1.3), oddValue)),
    seed: maybe(intish(0, 99)),
    stop: maybe(fc.oneof(fc.array(fc.string({ maxLength: 3 }), { maxLength: 3 }), oddValue)),
    stopAtEos: maybe(fc.oneof(fc.boolean(), oddValue)),
  },
  { requiredKeys: [] },
);

const optionsCase = fc.record({
  kind: fc.constant("options" as const),
  api: fc.constantFrom("session" as const, "model" as const, "batch" as const),
  prompt: fc.nat(3),
  session: fc.option(sessionOptions, { nil: null, freq: 12 }),
  generate: fc.option(generateOptions, { nil: null, freq: 12 }),
  signal: fc.constantFrom("none" as const, "none" as const, "none" as const, "aborted" as const, "fake" as const, "object" as const),
  second: fc.boolean(),
});

const sweepCase = fc.record({
  kind: fc.constant("sweep" as const),
  api: fc.constantFrom("session" as const, "session" as const, "model" as const, "batch" as const),
  prompt: fc.nat(3),
  action: fc.constantFrom(
    "abort" as const,
    "dispose" as const,
    "return" as const,
    "throw" as const,
    "abortDuringDecode" as const,
    "disposeDuringDecode" as const,
  ),
  at: fc.nat(9),
  maxNewTokens: fc.integer({ min: 1, max: 10 }),
  hybrid: fc.boolean(),
});

const poolCase = fc.record({
  kind: fc.constant("pool" as const),
  promptRepeat: fc.integer({ min: 1, max: 24 }),
  chunk: fc.constantFrom(8, 16, 40, 4096),
  hybrid: fc.boolean(),
});

propertyTest<SessionCase>(
  "session and generate options: a useful Error, or valid tokens (transformers' where greedy), and nothing held afterwards",
  "session options",
  optionsCase,
  3,
  120,
  options,
);

propertyTest<SessionCase>(
  "dispose, abort, return and throw at every point of a generation leave nothing held and the session correct",
  "dispose/abort",
  sweepCase,
  4,
  150,
  options,
);

propertyTest<SessionCase>(
  "a KV pool that runs out mid-prefill, at any layer, rolls back and leaves the session correct",
  "pool exhaustion",
  poolCase,
  5,
  40,
  options,
);
