// Options are checked up front with messages that name the option: null options, a callback
// that is not a function, a signal that is not an AbortSignal, numbers of the wrong type or out of
// range (hybrid sink + window past int32 among them). And the pool's error points at options that exist.
import * as path from "node:path";
import { calibrate, loadModel, type Model, PoolExhaustedError } from "../../lib";
import { runChild } from "../helpers/child";
import { fixtureRoot } from "../helpers/fixtures";

const dir = path.join(fixtureRoot, "llama-tiny");
let model: Model;
beforeAll(async () => {
  model = await loadModel(dir, { device: "cpu", kvCacheBytes: 2 ** 20 });
});
afterAll(async () => model?.dispose());

test.each([
  ["options = null", null, /loadModel: options must be an object \(or left out\), got null/],
  ["options = a string", "cpu", /loadModel: options must be an object \(or left out\), got "cpu"/],
  ["onProgress not a function", { onProgress: 5 }, /loadModel: onProgress must be a function, got 5/],
  ["signal not an AbortSignal", { signal: {} }, /loadModel: signal must be an AbortSignal/],
  ["signal a string", { signal: "abort" }, /loadModel: signal must be an AbortSignal .*, got "abort"/],
  ["an unknown device", { device: "gpu" }, /loadModel: device must be "cpu", "cuda" or "cuda:N", got "gpu"/],
  ["an unknown dtype", { dtype: "f64" }, /loadModel: dtype must be one of f32, f16, bf16, got "f64"/],
  ["an integer computeDType", { computeDType: "i32" }, /loadModel: computeDType must be one of f32, f16, bf16, got "i32"/],
  ["kvCacheBytes as a string", { kvCacheBytes: "1000000" }, /loadModel: kvCacheBytes must be a number of bytes > 0, got "1000000"/],
  ["kvCacheBytes infinite", { kvCacheBytes: Infinity }, /loadModel: kvCacheBytes must be a number of bytes > 0/],
  ["pageSize 0", { pageSize: 0 }, /loadModel: pageSize must be an integer in \[1, \d+\], got 0/],
  ["pageSize 1.5", { pageSize: 1.5 }, /loadModel: pageSize must be an integer in \[1, \d+\], got 1.5/],
])("loadModel with %s is a clear error", async (_, options, message) => {
  await expect(loadModel(dir, options as never)).rejects.toThrow(message);
});

test("loadModel with a directory that is not a string is a clear error", async () => {
  await expect(loadModel(5 as never)).rejects.toThrow(/loadModel: dir must be a model directory path \(a string\), got 5/);
});

test.each([
  ["options = null", null, /createSession: options must be an object \(or left out\), got null/],
  ["maxContext past int32", { maxContext: 2 ** 40 }, /createSession: maxContext must be an integer in \[1, \d+\], got 1099511627776/],
  ["prefillChunk as a string", { prefillChunk: "64" }, /createSession: prefillChunk must be an integer in \[1, \d+\], got "64"/],
  ["hybrid null", { hybrid: null }, /hybrid must be an options object/],
  ["hybrid an array", { hybrid: [] }, /hybrid must be an options object/],
  [
    "sink + window past int32",
    { hybrid: { mode: "auto", sink: 2 ** 31 - 1, window: 2 ** 31 - 1 } },
    /hybrid\.sink must be an integer in \[0, \d+\]/,
  ],
  [
    "sink + window too large together",
    { hybrid: { mode: "auto", sink: 2 ** 20, window: 2 ** 30 } },
    /hybrid\.sink \+ hybrid\.window must be at most \d+, got 1074790400/,
  ],
  [
    "window past the bound",
    { hybrid: { mode: "auto", window: 2 ** 31 } },
    /hybrid\.window must be an integer in \[1, \d+\], got 2147483648/,
  ],
  [
    "lastQueries as a string",
    { hybrid: { mode: "auto", lastQueries: "32" } },
    /hybrid\.lastQueries must be an integer in \[1, \d+\], got "32"/,
  ],
  ["a random seed past uint32", { hybrid: { mode: "random", seed: 2 ** 40 } }, /hybrid\.seed must be an integer in \[0, 4294967295\]/],
  [
    "a misspelt option",
    { max_context: 64 },
    /createSession: options has no option "max_context"; its options are maxContext, prefillChunk, hybrid/,
  ],
  [
    "a generation's option",
    { maxNewTokens: 4 },
    /createSession: options has no option "maxNewTokens" \(maxNewTokens: a generation's options, given to generate\)/,
  ],
])("createSession with %s is a clear error", (_, options, message) => {
  expect(() => model.createSession(options as never)).toThrow(message);
});

test.each([
  ["options = null", null, /generate: options must be an object \(or left out\), got null/],
  ["signal not an AbortSignal", { signal: { aborted: false } }, /generate: signal must be an AbortSignal/],
  ["maxNewTokens as a string", { maxNewTokens: "5" }, /generate: maxNewTokens must be an integer in \[0, \d+\], got "5"/],
  ["stop as a string", { stop: "\n" }, /generate: stop must be an array of non-empty strings/],
  ["an empty stop string", { stop: ["\n", ""] }, /generate: stop\[1\] is "": stop strings must be non-empty strings/],
  ["stopAtEos as a string", { stopAtEos: "no" }, /generate: stopAtEos must be true or false, got "no"/],
  ["temperature as a string", { temperature: "0.5" }, /temperature must be a finite number >= 0, got "0.5"/],
  ["topP as a string", { topP: "0.9" }, /topP must be a number in \(0, 1\], got "0.9"/],
  ["a seed past the safe integers", { seed: 2 ** 60 }, /seed must be an integer, and a safe one/],
  ["a misspelt option", { max_new_tokens: 3 }, /generate: options has no option "max_new_tokens"; its options are maxNewTokens, stop/],
  [
    "a session's option",
    { hybrid: { mode: "streaming-all" } },
    /generate: options has no option "hybrid" \(hybrid: a session's options, given to createSession\)/,
  ],
])("session.generate with %s is a clear error and the session stays usable", async (_, options, message) => {
  const session = model.createSession();
  try {
    await expect(session.generate("Once upon a time", options as never).next()).rejects.toThrow(message);
    const tokens: number[] = [];
    for await (const c of session.generate("Once upon a time", { maxNewTokens: 2 })) tokens.push(...c.tokens);
    expect(tokens.length).toBeGreaterThan(0);
  } finally {
    session.dispose();
  }
});

test.each([
  ["options = null", ["a"], null, /generateBatch: options must be an object \(or left out\), got null/],
  ["prompts not an array", "abc", {}, /generateBatch: prompts must be an array of prompts, got "abc"/],
  ["a chat message without content", [[{ role: "user" }]], {}, /chat message 0 must be \{ role: string, content: string \}/],
  ["a prompt that is a number", [5], {}, /generateBatch: prompts\[0\] must be a string, an array of chat messages or token ids, got 5/],
  [
    "token ids in a Uint32Array",
    [Uint32Array.of(1, 2)],
    {},
    /generateBatch: prompts\[0\] must be a string, an array of chat messages or token ids, got a Uint32Array/,
  ],
  ["token ids with a chat message among them", [[7, { role: "user", content: "a" }]], {}, /generateBatch: prompts\[0\]\[1\] is an object/],
  ["chat messages with a token id among them", [[{ role: "user", content: "a" }, 7]], {}, /chat message 1 must be \{ role: string/],
  ["signal not an AbortSignal", ["a"], { signal: 1 }, /generateBatch: signal must be an AbortSignal/],
  [
    "hybrid sink + window too large",
    ["a"],
    { hybrid: { mode: "auto", sink: 2 ** 20, window: 2 ** 30 } },
    /hybrid\.sink \+ hybrid\.window must be at most/,
  ],
  ["a misspelt option", ["a"], { maxNewToken: 3 }, /generateBatch: options has no option "maxNewToken"; its options are maxNewTokens/],
])("generateBatch with %s is a clear error", async (_, prompts, options, message) => {
  const used = model.pool.usedPages;
  await expect(model.generateBatch(prompts as never, options as never)).rejects.toThrow(message);
  expect(model.pool.usedPages).toBe(used);
});

test("options an object inherits (a prototype, getters) count in model.generate, generateBatch and session.generate alike", async () => {
  const maxNewTokens = 1 + Math.floor(Math.random() * 4);
  const inherited = Object.create({ maxNewTokens, stopAtEos: false });
  class Getters {
    get maxNewTokens() {
      return maxNewTokens;
    }
    get stopAtEos() {
      return false;
    }
  }
  for (const options of [inherited, new Getters()]) {
    const chunks = [];
    for await (const c of model.generate("Once upon a time", options)) chunks.push(c);
    expect(chunks.flatMap((c) => c.tokens)).toHaveLength(maxNewTokens);
    const [result] = await model.generateBatch(["Once upon a time"], options);
    expect(result.tokens).toHaveLength(maxNewTokens);
  }
});

test("model.generate with null options, or a misspelt one, is a clear error", async () => {
  await expect(model.generate("Once upon a time", null as never).next()).rejects.toThrow(
    /options must be an object \(or left out\), got null/,
  );
  await expect(model.generate("Once upon a time", { max_new_tokens: 3 } as never).next()).rejects.toThrow(
    /generate: options has no option "max_new_tokens"/,
  );
  // Both kinds together are what model.generate takes.
  const chunks = [];
  for await (const c of model.generate("Once upon a time", { maxNewTokens: 2, maxContext: 64, stopAtEos: false })) chunks.push(c);
  expect(chunks.flatMap((c) => c.tokens)).toHaveLength(2);
});

test.each([
  ["options = null", ["a"], null, /calibrate: options must be an object \(or left out\), got null/],
  ["onProgress not a function", ["a"], { onProgress: "bar" }, /calibrate: onProgress must be a function, got "bar"/],
  ["signal not an AbortSignal", ["a"], { signal: true }, /calibrate: signal must be an AbortSignal/],
  ["prompts not strings", [5], {}, /calibrate: prompts must be an array of strings/],
  ["no prompts", [], {}, /calibrate: no prompts were given; calibrating needs at least one longer than sink \+ window/],
  [
    "hybrid sink + window too large",
    ["a"],
    { hybrid: { sink: 2 ** 20, window: 2 ** 30 } },
    /hybrid\.sink \+ hybrid\.window must be at most/,
  ],
])("calibrate with %s is a clear error", async (_, prompts, options, message) => {
  await expect(calibrate(model, prompts as never, options as never)).rejects.toThrow(message);
});

test("the pool's error points at options that exist", async () => {
  const small = await loadModel(dir, { device: "cpu", kvCacheBytes: 4 * 2 * 16 * 64 * 4 });
  try {
    const err = await small.generateBatch(["The quick brown fox jumps over the lazy dog"], { maxNewTokens: 2 }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err).toBeInstanceOf(PoolExhaustedError);
    expect(err!.message).toMatch(/loadModel\(dir, \{ kvCacheBytes \}\)/);
    expect(err!.message).not.toMatch(/kvPages/);
  } finally {
    await small.dispose();
  }
});

test("a KV pool larger than int32 pool slots is a clear error before anything is allocated (child process)", () => {
  // 2^27 pages of 16 tokens: slot ids would pass 2^31. Before the check, the pool tried to
  // allocate its tensors (hundreds of GiB) and a JS array of 2^27 free page ids.
  const r = runChild(
    `
    const { loadModel } = require(process.env.LIGHTTRANSFER_ROOT + "/lib");
    const pageBytes = 2 * 16 * 1 * 64 * 4;
    loadModel(${JSON.stringify(dir)}, { device: "cpu", kvCacheBytes: 2 ** 27 * pageBytes }).then(
      (m) => { console.log("RESULT loaded " + m.pool.numPages); return m.dispose(); },
      (err) => console.log("RESULT " + err.name + ": " + err.message),
    );
  `,
    { heapMiB: 512 },
  );
  expect({ status: r.status, signal: r.signal }).toEqual({ status: 0, signal: null });
  expect(r.stdout).toMatch(
    /RESULT RangeError: numPages must be an integer in \[1, 134217727\] \(pool slots are int32\), got 134217728: ask for fewer kvCacheBytes/,
  );
});
