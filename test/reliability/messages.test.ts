// Error messages say what was wrong and how to fix it, where the input used to reach code that
// failed with something unrelated: hybrid values JSON cannot print (NaN shown as null, a BigInt
// crashing the message itself), an empty prompt taken for chat messages, a tokenizer with ids past
// the model's vocabulary failing deep in prefill, memory-planner options turning into NaN plans,
// and a server over a disposed model answering 500s that name a freed tensor. Values are drawn
// afresh on every run; the seed is in the describe names.
import * as fs from "node:fs";
import * as path from "node:path";
import type { FastifyInstance } from "fastify";
import {
  calibrate,
  createServer,
  loadModel,
  type Model,
  type ModelConfig,
  memoryUsage,
  type Prompt,
  planMemory,
  readConfig,
  resolveEvalConfig,
  runEval,
  Tensor,
} from "../../lib";
import { resolveHybrid } from "../../lib/hybrid/options";
import { fixtureRoot } from "../helpers/fixtures";
import { copyFixture } from "../helpers/model-dir";
import { Random } from "../helpers/reference";

const rng = new Random();
const dir = path.join(fixtureRoot, "llama-tiny");
const vocab = 384;

/** Token ids of the tiny vocabulary, past its special tokens (0..3). */
function randomIds(length: number): number[] {
  return Array.from({ length }, () => rng.int(4, vocab - 1));
}

/** Lowercase words the tiny BPE encodes to ordinary tokens. */
function randomText(words: number): string {
  return Array.from({ length: words }, () =>
    Array.from({ length: rng.int(1, 6) }, () => String.fromCharCode(97 + rng.int(0, 25))).join(""),
  ).join(" ");
}

/** A request to a server listening on 127.0.0.1 (fastify's inject does not load under jest): status and JSON body. */
async function call(base: string, method: "GET" | "POST", route: string, payload?: object) {
  const reply = await fetch(`${base}${route}`, {
    method,
    headers: payload ? { "content-type": "application/json" } : {},
    body: payload ? JSON.stringify(payload) : undefined,
  });
  const text = await reply.text();
  return { statusCode: reply.status, json: () => JSON.parse(text) };
}

async function drain(chunks: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of chunks);
}

/** How an error message should print a value, written out here rather than taken from the library. */
function printed(v: unknown): string {
  return typeof v === "bigint" ? `${v}n` : String(v);
}

/** `s` as a regular expression that matches it literally. */
function literal(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

let model: Model;
let bare: Model;
beforeAll(async () => {
  model = await loadModel(dir, { device: "cpu", kvCacheBytes: 2 ** 20 });
  bare = await loadModel(dir, { device: "cpu", kvCacheBytes: 2 ** 20, tokenizer: false });
});
afterAll(async () => {
  await model?.dispose();
  await bare?.dispose();
});

describe(`hybrid options print the value they got (seed ${rng.seed})`, () => {
  // Values JSON.stringify prints as null or cannot print at all.
  const unprintable = (): unknown[] => [NaN, Infinity, -Infinity, BigInt(rng.int(1, 2 ** 31)), -BigInt(rng.int(1, 1000))];

  test.each(["fullLayers", "mode", "prefill"])("hybrid.%s", (field) => {
    for (const value of unprintable()) {
      const message = new RegExp(`hybrid\\.${field} must be .*got ${literal(printed(value))}$`);
      expect(() => resolveHybrid({ mode: "auto", [field]: value } as never, rng.int(2, 64))).toThrow(message);
      expect(() => model.createSession({ hybrid: { mode: "auto", [field]: value } as never })).toThrow(message);
    }
  });

  test("an entry of hybrid.lazyLayers", () => {
    for (const value of unprintable()) {
      const layers = rng.int(2, 64);
      const lazy: unknown[] = Array.from({ length: rng.int(0, 3) }, () => rng.int(0, layers - 1));
      lazy.splice(rng.int(0, lazy.length), 0, value);
      expect(() => resolveHybrid({ mode: "fixed", lazyLayers: lazy as number[] }, layers)).toThrow(
        new RegExp(`hybrid\\.lazyLayers has ${literal(printed(value))}; layers are 0\\.\\.${layers - 1}`),
      );
    }
  });

  test("hybrid itself", () => {
    const value = BigInt(rng.int(0, 2 ** 31));
    expect(() => model.createSession({ hybrid: value as never })).toThrow(
      new RegExp(`hybrid must be an options object \\(or left out\\), got ${value}n`),
    );
  });
});

describe(`an empty prompt is called empty (seed ${rng.seed})`, () => {
  const empties: Array<[string, () => Prompt]> = [
    ["[]", () => []],
    ["an empty Int32Array", () => new Int32Array(0)],
  ];
  const emptyError = (label: string) =>
    new RegExp(`${literal(label)} is empty: pass text, at least one chat message, or at least one token id`);

  // The tiny model has a chat template, so [] taken for chat rendered a bare generation prompt and
  // generated from it; the bare model has no tokenizer, so [] blamed the missing tokenizer.
  describe.each([
    ["with a tokenizer and chat template", () => model],
    ["without a tokenizer", () => bare],
  ])("a model %s", (_, which) => {
    test.each(empties)("model.generate(%s)", async (_, empty) => {
      await expect(drain(which().generate(empty(), { maxNewTokens: rng.int(1, 4) }))).rejects.toThrow(emptyError("generate: prompt"));
    });

    test.each(empties)("session.generate(%s) leaves the session as it was", async (_, empty) => {
      const session = which().createSession();
      try {
        const first = randomIds(rng.int(1, 8));
        await drain(session.generate(first, { maxNewTokens: rng.int(1, 4), stopAtEos: false }));
        const held = session.stats.contextTokens;
        await expect(drain(session.generate(empty(), { maxNewTokens: 2 }))).rejects.toThrow(emptyError("generate: prompt"));
        expect(session.stats.contextTokens).toBe(held);
      } finally {
        session.dispose();
      }
    });

    test.each(empties)("generateBatch with %s among its prompts names that prompt", async (_, empty) => {
      const prompts: Prompt[] = Array.from({ length: rng.int(1, 4) }, () => randomIds(rng.int(1, 6)));
      const at = rng.int(0, prompts.length);
      prompts.splice(at, 0, empty());
      const used = which().pool.usedPages;
      await expect(which().generateBatch(prompts, { maxNewTokens: 2 })).rejects.toThrow(emptyError(`generateBatch: prompts[${at}]`));
      expect(which().pool.usedPages).toBe(used);
    });

    test.each(empties)("score with %s as the prompt", async (_, empty) => {
      await expect(which().score(empty(), randomIds(rng.int(1, 6)))).rejects.toThrow(emptyError("score: prompt"));
    });

    test.each(empties)("score with %s as the continuation", async (_, empty) => {
      await expect(which().score(randomIds(rng.int(1, 6)), empty() as number[])).rejects.toThrow(
        /score: the continuation encodes to no tokens/,
      );
    });
  });
});

describe(`a tokenizer with ids past the model's vocabulary (seed ${rng.seed})`, () => {
  // tokenizer.json with an added token the weights have no row for: the checkpoint loads (the
  // weights match config.json), and only a prompt that uses the token can go wrong.
  const extraId = rng.pick([vocab, vocab + rng.int(1, 10_000)]);
  const extra = `<|extra_${rng.int(0, 999)}|>`;
  let copy: Model;
  let copyDir: string;
  beforeAll(async () => {
    copyDir = copyFixture("llama-tiny");
    const file = path.join(copyDir, "tokenizer.json");
    const tokenizer = JSON.parse(fs.readFileSync(file, "utf8"));
    tokenizer.added_tokens.push({
      id: extraId,
      content: extra,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    });
    fs.writeFileSync(file, JSON.stringify(tokenizer));
    copy = await loadModel(copyDir, { device: "cpu", kvCacheBytes: 2 ** 20 });
  });
  afterAll(async () => {
    await copy?.dispose();
    fs.rmSync(copyDir, { recursive: true, force: true });
  });

  const mismatch = (label: string) =>
    new RegExp(
      `${literal(label)}: the tokenizer gives token id ${extraId}, but the model's vocabulary has ${vocab} entries .*tokenizer\\.json does not match config\\.json`,
    );
  /** Random words with the extra token somewhere among them. */
  const textWithExtra = () => {
    const words = randomText(rng.int(1, 6)).split(" ");
    words.splice(rng.int(0, words.length), 0, extra);
    return words.join(" ");
  };

  test("the token is there and past the vocabulary", () => {
    expect(copy.tokenizer.encode(extra, { addSpecialTokens: false })).toEqual([extraId]);
    expect(copy.config.vocabSize).toBe(vocab);
  });

  test("a text prompt", async () => {
    await expect(drain(copy.generate(textWithExtra(), { maxNewTokens: 2 }))).rejects.toThrow(mismatch("generate: prompt"));
  });

  test("chat messages", async () => {
    const messages = [{ role: "user", content: textWithExtra() }];
    if (rng.next() < 0.5) messages.unshift({ role: "system", content: randomText(rng.int(1, 4)) });
    const session = copy.createSession();
    try {
      await expect(drain(session.generate(messages, { maxNewTokens: 2 }))).rejects.toThrow(mismatch("generate: prompt"));
      expect(session.stats.contextTokens).toBe(0);
    } finally {
      session.dispose();
    }
  });

  test("one prompt of a batch", async () => {
    const prompts: Prompt[] = Array.from({ length: rng.int(1, 3) }, () => randomText(rng.int(1, 4)));
    const at = rng.int(0, prompts.length);
    prompts.splice(at, 0, textWithExtra());
    await expect(copy.generateBatch(prompts, { maxNewTokens: 2 })).rejects.toThrow(mismatch(`generateBatch: prompts[${at}]`));
  });

  test("a score's text continuation", async () => {
    await expect(copy.score(randomText(rng.int(1, 4)), ` ${textWithExtra()}`)).rejects.toThrow(mismatch("score: continuation"));
  });

  test("a server request is a 400 that says so", async () => {
    const app = await createServer(copy, { modelName: "tiny" });
    try {
      const base = await app.listen({ host: "127.0.0.1", port: 0 });
      const reply = await call(base, "POST", "/v1/completions", { model: "tiny", prompt: textWithExtra(), max_tokens: 2 });
      expect(reply.statusCode).toBe(400);
      expect(reply.json().error.message).toMatch(mismatch("prompt"));
    } finally {
      await app.close();
    }
  });
});

describe(`planMemory checks its options (seed ${rng.seed})`, () => {
  const config = { layers: rng.int(1, 80), kvHeads: rng.int(1, 16), headDim: 16 * rng.int(1, 16), slidingWindow: null } as ModelConfig;
  const valid = () => ({
    context: rng.int(1, 200_000),
    memoryBytes: rng.int(2 ** 20, 2 ** 37),
    weightBytes: rng.int(0, 2 ** 30),
    fullLayers: rng.int(0, config.layers),
  });

  test("valid options give a plan of finite integers", () => {
    const plan = planMemory(config, {
      ...valid(),
      sink: rng.int(0, 64),
      window: rng.int(1, 4096),
      dtype: rng.pick(["f32", "f16", "bf16"]),
    });
    for (const n of [plan.pageBytes, plan.poolPages, plan.poolBytes, ...Object.values(plan.full), ...Object.values(plan.hybrid!)])
      expect(Number.isInteger(n)).toBe(true);
  });

  const bad: Array<[string, () => Record<string, unknown>, RegExp]> = [
    ["a negative sink", () => ({ sink: -rng.int(1, 100) }), /planMemory: sink must be an integer in \[0, \d+\], got -\d+/],
    ["a NaN sink", () => ({ sink: NaN }), /planMemory: sink must be an integer in \[0, \d+\], got NaN/],
    ["a fractional window", () => ({ window: rng.int(1, 100) + 0.5 }), /planMemory: window must be an integer in \[1, \d+\], got \d+\.5/],
    ["a NaN weightBytes", () => ({ weightBytes: NaN }), /planMemory: weightBytes must be a finite number of bytes >= 0, got NaN/],
    [
      "a negative weightBytes",
      () => ({ weightBytes: -rng.int(1, 2 ** 30) }),
      /planMemory: weightBytes must be a finite number of bytes >= 0, got -\d+/,
    ],
    [
      "an infinite memoryBytes",
      () => ({ memoryBytes: Infinity }),
      /planMemory: memoryBytes must be a finite number of bytes > 0, got Infinity/,
    ],
    [
      "memoryBytes as a string",
      () => ({ memoryBytes: String(rng.int(1, 2 ** 30)) }),
      /planMemory: memoryBytes must be a finite number of bytes > 0, got "\d+"/,
    ],
    [
      "an unknown dtype",
      () => ({ dtype: rng.pick(["f64", "int8", "BF16", ""]) }),
      /planMemory: dtype must be one of f32, f16, bf16, got "/,
    ],
    ["an integer dtype", () => ({ dtype: "i32" }), /planMemory: dtype must be one of f32, f16, bf16, got "i32"/],
    ["a BigInt context", () => ({ context: BigInt(rng.int(1, 1000)) }), /planMemory: context must be an integer in \[1, \d+\], got \d+n/],
    [
      "a fullLayers past the layers",
      () => ({ fullLayers: config.layers + rng.int(1, 10) }),
      /planMemory: fullLayers must be an integer in \[0, \d+\]/,
    ],
    ["pageSize 0", () => ({ pageSize: 0 }), /planMemory: pageSize must be an integer in \[1, \d+\], got 0/],
  ];
  test.each(bad)("%s", (_, change, message) => {
    expect(() => planMemory(config, { ...valid(), ...change() } as never)).toThrow(message);
  });

  test("left-out or null options", () => {
    expect(() => (planMemory as (c: ModelConfig) => unknown)(config)).toThrow(
      /planMemory: options \{ context, memoryBytes, weightBytes, fullLayers \} are required/,
    );
    expect(() => planMemory(config, null as never)).toThrow(/planMemory: options must be an object/);
  });

  test("a config that is not a model config", () => {
    expect(() => planMemory(undefined as never, valid())).toThrow(/planMemory: config must be a model config/);
    expect(() => planMemory({ ...config, kvHeads: NaN }, valid())).toThrow(/planMemory: config\.kvHeads must be an integer >= 1, got NaN/);
  });
});

describe(`a server over a disposed model (seed ${rng.seed})`, () => {
  let own: Model;
  let app: FastifyInstance;
  let base: string;
  beforeAll(async () => {
    own = await loadModel(dir, { device: "cpu", kvCacheBytes: 2 ** 20 });
    app = await createServer(own, { modelName: "tiny" });
    base = await app.listen({ host: "127.0.0.1", port: 0 });
  });
  afterAll(async () => {
    await app?.close();
    await own?.dispose();
  });

  const post = (route: string, payload: object) => call(base, "POST", route, payload);
  const requests = (): Array<[string, object]> => [
    ["/v1/completions", { model: "tiny", prompt: randomIds(rng.int(1, 8)), max_tokens: rng.int(1, 4) }],
    ["/v1/completions", { model: "tiny", prompt: randomText(rng.int(1, 6)), max_tokens: rng.int(1, 4), stream: rng.next() < 0.5 }],
    [
      "/v1/chat/completions",
      { model: "tiny", messages: [{ role: "user", content: randomText(rng.int(1, 6)) }], max_tokens: rng.int(1, 4) },
    ],
  ];

  test("answers requests while the model is live, 503 model_disposed after dispose()", async () => {
    const [url, body] = rng.pick(requests());
    expect((await post(url, { ...body, stream: false })).statusCode).toBe(200);
    await own.dispose();
    for (const [url, body] of requests()) {
      const reply = await post(url, body);
      expect(reply.statusCode).toBe(503);
      const { error } = reply.json();
      expect(error.code).toBe("model_disposed");
      expect(error.type).toBe("server_error");
      expect(error.message).toMatch(/the model this server runs was disposed .*close it/);
      expect(error.message).not.toMatch(/tensor/);
    }
    const health = await call(base, "GET", "/health");
    expect(health.statusCode).toBe(503);
    expect(health.json().error.code).toBe("model_disposed");
  });
});

describe(`the wrong object, a missing tokenizer, a config file for its directory (seed ${rng.seed})`, () => {
  let model: Model;
  let bare: Model;
  beforeAll(async () => {
    model = await loadModel(dir, { device: "cpu", kvCacheBytes: 2 ** 22 });
    bare = await loadModel(dir, { device: "cpu", kvCacheBytes: 2 ** 22, tokenizer: false });
  });
  afterAll(async () => {
    await model?.dispose();
    await bare?.dispose();
  });

  test("createServer, calibrate and runEval name what they got in place of a Model", async () => {
    const session = model.createSession();
    try {
      for (const [wrong, shown] of [
        [session, "a Session"],
        [dir, JSON.stringify(dir)],
        [{}, "an object"],
      ] as const) {
        await expect(createServer(wrong as never)).rejects.toThrow(`createServer: model must be a Model from loadModel(), got ${shown}`);
        await expect(calibrate(wrong as never, [randomText(4)])).rejects.toThrow(
          `calibrate: model must be a Model from loadModel(), got ${shown}`,
        );
        await expect(runEval(wrong as never, {} as never)).rejects.toThrow(`runEval: model must be a Model from loadModel(), got ${shown}`);
      }
    } finally {
      session.dispose();
    }
  });

  test("calibrate and runEval on a model without a tokenizer say they need one", async () => {
    await expect(calibrate(bare, [randomText(4)])).rejects.toThrow(
      /^calibrate: its prompts are text, and this model was loaded without a tokenizer; load it with one/,
    );
    const config = resolveEvalConfig([{ contexts: [64], seeds: [0] }], false);
    await expect(runEval(bare, config)).rejects.toThrow(
      /^runEval: its samples are written as text .* loaded without one; load it with one/,
    );
  });

  test("a KV pool the device cannot hold names kvCacheBytes, not tensors to free; the CLI names --kv-memory", async () => {
    // The allocator's failure, injected for the pool's pages (rank 4) alone: a real one needs more memory than the machine has.
    const before = memoryUsage().cpu;
    const empty = Tensor.empty.bind(Tensor);
    const spy = jest.spyOn(Tensor, "empty").mockImplementation((shape, dtype, device) => {
      if (shape.length === 4)
        throw new Error(
          "out of host memory: could not allocate 8192 MiB; free tensors you no longer need (tensor.dispose()) or use smaller shapes",
        );
      return empty(shape, dtype, device);
    });
    try {
      await expect(loadModel(dir, { device: "cpu", kvCacheBytes: 2 ** 33 })).rejects.toThrow(
        /^loadModel: the KV pool \(8\.00 GiB, kvCacheBytes\) does not fit in cpu's memory: out of host memory: could not allocate 8192 MiB; ask for a smaller kvCacheBytes$/,
      );
    } finally {
      spy.mockRestore();
    }
    // The weights it had loaded went back.
    expect(memoryUsage().cpu).toBe(before);
  });

  test("a config.json given for its directory is a ConfigError that says to give the directory", async () => {
    const file = path.join(dir, "config.json");
    expect(() => readConfig(file)).toThrow(`${file}: is a file; give the model's directory (the one that holds config.json)`);
    await expect(loadModel(file, { device: "cpu" })).rejects.toMatchObject({ name: "ConfigError" });
  });
});
