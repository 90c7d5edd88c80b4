// Our decoder against Hugging Face transformers on the tiny checkpoints of test/fixtures
// (made by tools/make_fixtures.py): token ids, logits at every position, 32 greedy tokens, the
// chat template, chunked prefill, batched generation, and the errors a user can run into.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { loadModel, type Model, memoryUsage } from "../lib";
import { defaultPrefillChunk, prefillActivationBudget } from "../lib/model/decoder";
import { fixtureModels, fixtureRoot, prefilledSequences, readLogits, readReference } from "./helpers/fixtures";
import { collectGarbage } from "./helpers/gc";

// The reference runs transformers in float32 on the same (16-bit or f32) weights; we compute in
// f32 too, so only summation order differs: ~1e-6 relative per op, compounding over a few layers
// to well under 1e-4 of the logits' scale.
const logitTolerance = (scale: number) => 1e-4 * Math.max(1, scale);

describe.each(fixtureModels)("%s on the CPU matches transformers", (name) => {
  const ref = readReference(name);
  const dir = path.join(fixtureRoot, name);
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(dir, { device: "cpu", kvCacheBytes: 8 * 2 ** 20 });
  });
  afterAll(async () => model?.dispose());

  test("config and tokenizer", () => {
    expect(model.config.architecture).toBe(ref.architecture);
    for (const c of ref.cases.slice(0, -1)) expect(model.tokenizer.encode(c.prompt)).toEqual(c.ids);
    expect(model.tokenizer.applyChatTemplate(ref.chatTemplateInput as never, { addGenerationPrompt: true })).toBe(ref.chatTemplateOutput);
  });

  test.each(ref.cases.map((c, i) => [i, c.ids.length] as const))("logits at every position, case %i (%i tokens)", (i) => {
    const c = ref.cases[i];
    const want = readLogits(name, c);
    for (const chunkSize of [1024, 5]) {
      const seq = model.decoder.createSequence();
      try {
        const got = model.decoder.prefill(seq, c.ids, { allLogits: true, chunkSize });
        expect(got.length).toBe(want.length);
        let scale = 0,
          worst = 0;
        for (let j = 0; j < want.length; j++) {
          scale = Math.max(scale, Math.abs(want[j]));
          worst = Math.max(worst, Math.abs(got[j] - want[j]));
        }
        if (!(worst <= logitTolerance(scale)))
          throw new Error(`chunk ${chunkSize}: max |logit error| ${worst} over scale ${scale} (tolerance ${logitTolerance(scale)})`);
      } finally {
        seq.dispose();
      }
    }
  });

  test.each(ref.cases.map((_c, i) => [i] as const))("32 greedy tokens equal transformers', case %i", async (i) => {
    const c = ref.cases[i];
    const prompt = i < ref.cases.length - 1 ? c.prompt : (ref.chatTemplateInput as never);
    const tokens: number[] = [];
    for await (const chunk of model.generate(prompt, { maxNewTokens: 32, stopAtEos: false })) tokens.push(...chunk.tokens);
    expect(tokens).toEqual(c.greedy);
  });

  test("a greedy decode step picks the argmax of the logits decode() returns", () => {
    const prompts = ref.cases.slice(0, 3).map((c) => c.ids);
    const start = () => prefilledSequences(model.decoder, prompts);
    const logitSeqs = start(),
      greedySeqs = start();
    try {
      const vocab = model.config.vocabSize;
      let ids = prompts.map((p) => p[0]);
      for (let step = 0; step < 4; step++) {
        const logits = model.decoder.step(logitSeqs, ids, "logits");
        const want = ids.map((_, b) => {
          const row = logits.subarray(b * vocab, (b + 1) * vocab);
          return row.reduce((best, v, j) => (v > row[best] ? j : best), 0);
        });
        expect(Array.from(model.decoder.step(greedySeqs, ids, "argmax"))).toEqual(want);
        ids = want;
      }
    } finally {
      for (const s of [...logitSeqs, ...greedySeqs]) s.dispose();
    }
  });

  test("batched generation equals one-by-one generation and frees every page", async () => {
    const prompts = ref.cases.slice(0, -1).map((c) => c.prompt);
    const used = model.pool.usedPages;
    const results = await model.generateBatch(prompts, { maxNewTokens: 32, stopAtEos: false });
    results.forEach((r, i) => {
      expect(r.tokens).toEqual(ref.cases[i].greedy);
      expect(r.finishReason).toBe("length");
    });
    expect(model.pool.usedPages).toBe(used);
  });
});

describe("generation API", () => {
  const dir = path.join(fixtureRoot, "llama-tiny");
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(dir, { device: "cpu", kvCacheBytes: 8 * 2 ** 20 });
  });
  afterAll(async () => model?.dispose());

  test("stop strings end the text before them; stats count tokens and KV bytes", async () => {
    const ref = readReference("llama-tiny").cases[0];
    const full = ref.greedyText;
    const stop = full.slice(Math.floor(full.length / 2), Math.floor(full.length / 2) + 3);
    const session = model.createSession();
    let text = "";
    let reason: string | undefined;
    for await (const chunk of session.generate(ref.prompt, { maxNewTokens: 32, stop: [stop], stopAtEos: false })) {
      text += chunk.text;
      reason = chunk.finishReason;
    }
    expect(reason).toBe("stop");
    expect(text).toBe(full.slice(0, full.indexOf(stop)));
    const stats = session.stats;
    expect(stats.promptTokens).toBe(ref.ids.length);
    expect(stats.kvBytes).toBeGreaterThan(0);
    expect(stats.kvBytes).toBeGreaterThanOrEqual(stats.kvBytesFull);
    session.dispose();
  });

  test("an aborted signal stops generation", async () => {
    const controller = new AbortController();
    const chunks: string[] = [];
    await expect(async () => {
      for await (const chunk of model.generate("Once upon a time", { maxNewTokens: 30, signal: controller.signal })) {
        chunks.push(chunk.text);
        if (chunks.length === 3) controller.abort();
      }
    }).rejects.toThrow(/abort/i);
    expect(chunks.length).toBe(3);
  });

  test("a prompt longer than maxContext is a clear error and the model keeps working", async () => {
    const session = model.createSession({ maxContext: 4 });
    await expect(session.generate("The quick brown fox jumps over the lazy dog").next()).rejects.toThrow(/more than maxContext 4/);
    session.dispose();
    const out = await model.generateBatch(["Once upon a time"], { maxNewTokens: 2 });
    expect(out[0].tokens.length).toBe(2);
  });

  test("generation frees every temporary tensor itself (no garbage left for the GC)", async () => {
    await collectGarbage();
    const before = memoryUsage().cpu;
    await model.generateBatch(["Once upon a time", "The quick brown fox"], {
      maxNewTokens: 6,
      prefillChunk: 3,
      hybrid: { mode: "auto", fullLayers: 1, sink: 1, window: 3, lastQueries: 2 },
    });
    for await (const _ of model.generate("Once upon a time", { maxNewTokens: 4 }));
    expect(memoryUsage().cpu).toBe(before);
  });

  test("sampling is reproducible with a seed", async () => {
    const run = async () =>
      (
        await model.generateBatch(["Once upon a time"], {
          maxNewTokens: 12,
          temperature: 0.9,
          topK: 20,
          topP: 0.9,
          seed: 42,
          stopAtEos: false,
        })
      )[0].tokens;
    expect(await run()).toEqual(await run());
  });
});

describe("default prefill chunk", () => {
  test("the largest power of two in [1024, 65536] whose gate|up activations fit the budget", () => {
    const GiB = 2 ** 30;
    const cases: Array<[number, number, number, number]> = [
      [14336, 2, GiB, 16384], // Llama-3-8B in bf16: 16384 tokens take 896 MiB
      [14336, 2, 2 * GiB, 32768], // the same with 2 GiB: 32768 tokens take 1.75 GiB
      [14336, 2, 4 * GiB, 65536], // and with 4 GiB (an H200's budget): 65536 tokens take 3.5 GiB
      [14336, 4, GiB, 8192], // the same on the CPU, in f32
      [28672, 2, 2 * GiB, 16384], // Llama-3-70B's MLP
      [192, 4, GiB, 65536], // a tiny model: capped
      [16384, 2, 4 * GiB, 32768], // 65536 tokens would be 2^31 elements
      [1 << 20, 4, GiB, 1024], // an MLP too wide for 1024 tokens still gets 1024
    ];
    for (const [intermediateSize, bytes, budget, chunk] of cases) {
      expect(defaultPrefillChunk({ intermediateSize }, bytes, budget)).toBe(chunk);
      // Twice the chunk would break the budget or the element bound.
      const twice = 2 * chunk * 2 * intermediateSize;
      if (chunk > 1024 && chunk < 65536) expect(twice * bytes > budget || twice >= 2 ** 31).toBe(true);
      if (chunk > 1024) expect(chunk * 2 * intermediateSize * bytes).toBeLessThanOrEqual(budget);
      if (chunk > 1024) expect(chunk * 2 * intermediateSize).toBeLessThan(2 ** 31);
    }
    expect(defaultPrefillChunk({ intermediateSize: 14336 }, 2)).toBe(16384); // 1 GiB unless told
    expect(defaultPrefillChunk({ intermediateSize: 14336 }, 2, Number.NaN)).toBe(1024); // no budget: the least
  });

  test("the budget is a sixteenth of the spare device memory, within 1-4 GiB", () => {
    const GiB = 2 ** 30;
    expect(prefillActivationBudget(0)).toBe(GiB); // the CPU, or nothing to spare
    expect(prefillActivationBudget(-5 * GiB)).toBe(GiB); // a KV pool asked larger than the free memory
    expect(prefillActivationBudget(24 * GiB)).toBe(1.5 * GiB);
    expect(prefillActivationBudget(32 * GiB + 16)).toBe(2 * GiB + 1);
    expect(prefillActivationBudget(60 * GiB)).toBe(3.75 * GiB);
    expect(prefillActivationBudget(100 * GiB)).toBe(4 * GiB);
  });

  test("the decoder takes its default from its config and dtype; a chunked prefill generates the same", async () => {
    const model = await loadModel(path.join(fixtureRoot, "llama-tiny"), { device: "cpu" });
    try {
      expect(model.prefillChunk).toBe(defaultPrefillChunk(model.config, 4));
      expect(model.prefillChunk).toBe(model.decoder.prefillChunk);
      const chunked = await model.generateBatch(["Once upon a time"], { maxNewTokens: 4, prefillChunk: 2, stopAtEos: false });
      const whole = await model.generateBatch(["Once upon a time"], { maxNewTokens: 4, stopAtEos: false });
      expect(chunked[0].tokens).toEqual(whole[0].tokens);
    } finally {
      await model.dispose();
    }
  });
});

describe("loading errors name the file and leave other models working", () => {
  const src = path.join(fixtureRoot, "qwen2-tiny");
  const copy = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lt-model-"));
    for (const f of fs.readdirSync(src)) fs.copyFileSync(path.join(src, f), path.join(dir, f));
    return dir;
  };
  let other: Model;
  beforeAll(async () => {
    other = await loadModel(path.join(fixtureRoot, "llama-tiny"), { device: "cpu", kvCacheBytes: 2 ** 20 });
  });
  afterAll(async () => other?.dispose());
  afterEach(async () => {
    const out = await other.generateBatch(["The quick brown fox"], { maxNewTokens: 3, stopAtEos: false });
    expect(out[0].tokens).toEqual(readReference("llama-tiny").cases[0].greedy.slice(0, 3));
  });

  test("an option loadModel does not take is refused before anything loads, naming where a session's option goes", async () => {
    const dir = path.join(fixtureRoot, "llama-tiny");
    await expect(loadModel(dir, { devcie: "cpu" } as never)).rejects.toThrow(
      /loadModel: options has no option "devcie"; its options are device, /,
    );
    await expect(loadModel(dir, { device: "cpu", maxContext: 8192 } as never)).rejects.toThrow(
      /has no option "maxContext" \(maxContext: options of a session or a generation, given to createSession or generate\)/,
    );
  });
  test("a KV pool too small for one page a layer is refused with the bytes it needs", async () => {
    const dir = path.join(fixtureRoot, "llama-tiny");
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
    const headDim = cfg.head_dim ?? cfg.hidden_size / cfg.num_attention_heads;
    const page = 2 * 16 * cfg.num_key_value_heads * headDim * 4;
    const layers = cfg.num_hidden_layers;
    await expect(loadModel(dir, { device: "cpu", kvCacheBytes: 100 })).rejects.toThrow(
      `loadModel: kvCacheBytes 100 holds 0 KV page(s) of ${page} bytes (16 tokens of one layer in f32), and a sequence needs a page in each of the model's ${layers} layers; ask for at least ${layers * page} bytes`,
    );
    await expect(loadModel(dir, { device: "cpu", kvCacheBytes: layers * page - 1 })).rejects.toThrow(/ask for at least/);
    const least = await loadModel(dir, { device: "cpu", kvCacheBytes: layers * page });
    expect(least.pool.numPages).toBe(layers);
    await least.dispose();
  });
  test("missing directory", async () => {
    await expect(loadModel("/nonexistent/model", { device: "cpu" })).rejects.toThrow(/\/nonexistent\/model\/config.json: not found/);
  });
  test("unsupported architecture", async () => {
    const dir = copy();
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...cfg, architectures: ["GPT2LMHeadModel"] }));
    await expect(loadModel(dir, { device: "cpu" })).rejects.toThrow(/config.json: architecture "GPT2LMHeadModel" is not supported/);
  });
  test("config and weights disagree", async () => {
    const dir = copy();
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...cfg, intermediate_size: cfg.intermediate_size + 8 }));
    await expect(loadModel(dir, { device: "cpu" })).rejects.toThrow(
      /model.safetensors: tensor 'model.layers.0.mlp.gate_proj.weight' has shape \[\d+, \d+\] but config.json implies/,
    );
  });
  test("truncated weights", async () => {
    const dir = copy();
    const file = path.join(dir, "model.safetensors");
    fs.truncateSync(file, fs.statSync(file).size - 100);
    await expect(loadModel(dir, { device: "cpu" })).rejects.toThrow(
      /model.safetensors: tensor '.*' ends at byte \d+ of the data but the file holds \d+/,
    );
  });
  test("corrupt tokenizer", async () => {
    const dir = copy();
    fs.writeFileSync(path.join(dir, "tokenizer.json"), "{ broken");
    await expect(loadModel(dir, { device: "cpu" })).rejects.toThrow(/tokenizer.json: cannot be read as JSON/);
  });
  test("model.dispose() frees the weights and the KV pool", async () => {
    await collectGarbage();
    const before = memoryUsage().cpu;
    const m = await loadModel(src, { device: "cpu", kvCacheBytes: 2 ** 20 });
    expect(memoryUsage().cpu - before).toBeGreaterThanOrEqual(m.weightBytes + 2 ** 20 - m.pool.pageBytes);
    await m.dispose();
    expect(memoryUsage().cpu).toBe(before);
    await expect(async () => m.createSession()).rejects.toThrow(/this model was disposed/);
  });
});
