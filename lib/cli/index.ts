#!/usr/bin/env node
// The `lighttransfer` command: generate text, serve a model over HTTP, plan memory, inspect and
// calibrate lazy layers, evaluate quality, list devices.
import * as fs from "node:fs";
import * as path from "node:path";
import { SingleBar } from "cli-progress";
import { Command, InvalidArgumentError, Option } from "commander";
import { calibrate, layerFileOptions, readLayerFile } from "../api/calibrate";
import { readConfig } from "../checkpoint/config";
import { Checkpoint } from "../checkpoint/weights";
import { parseByteSize } from "../common/byte-size";
import { defaultPageSize, ringSize, streamingDefaults } from "../common/geometry";
import { heatmapSvg } from "../hybrid/heatmap";
import { type HybridOptions, resolveHybrid } from "../hybrid/options";
import { planMemory } from "../hybrid/planner";
import {
  accuracyVsContextSvg,
  accuracyVsFractionSvg,
  checkEvalPrompts,
  checkEvalSetup,
  createServer,
  cudaStatus,
  defaultEvalSettings,
  devices,
  type EvalSettings,
  loadModel,
  type Model,
  markdownReport,
  PoolExhaustedError,
  readEvalSettings,
  resolveEvalConfig,
  runEval,
  Tokenizer,
} from "../index";
import type { DeviceName, DType } from "../runtime/tensor";

function number(kind: "int" | "float") {
  return (value: string) => {
    // The whole text, not its longest numeric start: "-t 0,7" is an error, not temperature 0.
    const text = value.trim();
    const n = text === "" ? Number.NaN : Number(text);
    if (!Number.isFinite(n) || (kind === "int" && !Number.isInteger(n)))
      throw new InvalidArgumentError(`not a${kind === "int" ? "n integer" : " number"}: ${value}`);
    return n;
  };
}

/** An integer count in [least, most]: "--random-seeds -1" is an error, not no random modes. */
function countArg(least: number, most: number) {
  const int = number("int");
  return (value: string) => {
    const n = int(value);
    if (n < least || n > most) throw new InvalidArgumentError(`must be an integer in [${least}, ${most}], got ${value}`);
    return n;
  };
}

// Each seed is a sample of every task, context and depth (or a mode of random lazy layers): more
// than this many would run for weeks, and building their list alone takes the memory.
const mostSeeds = 10_000;

const program = new Command("lighttransfer").description("Hybrid long-context LLM inference (LightTransfer) for Node.js");

const generateCommand = program
  .command("generate")
  .description("stream a continuation of a prompt from a Hugging Face model directory")
  .requiredOption("-m, --model <dir>", "model directory (config.json, *.safetensors, tokenizer.json)")
  .addOption(new Option("-p, --prompt <text>", "the prompt").conflicts("ids"))
  .option("--ids <ids>", "the prompt as token ids, e.g. 1,15043,29892 (prints token ids when the model has no tokenizer)", idsArg)
  .option("--no-tokenizer", "load the model without its tokenizer: the prompt must be --ids, and token ids are printed")
  .option("--chat", "wrap the prompt as a user message with the model's chat template")
  .addOption(new Option("-d, --device <device>", "cpu, cuda or cuda:N (default: cuda if available)"))
  .addOption(dtypeOption())
  .option("-n, --max-new-tokens <n>", "tokens to generate", number("int"), 256)
  .option("-t, --temperature <t>", "0 = greedy", number("float"), 0)
  .option("--top-k <k>", "sample from the k most likely tokens, and any tied with the k-th (0 = all)", number("int"), 0)
  .option("--top-p <p>", "nucleus sampling mass", number("float"), 1)
  .option("--repetition-penalty <r>", "> 1 discourages repeats", number("float"), 1)
  .option("--seed <seed>", "sampler seed", number("int"))
  .option("--stop <text...>", "stop strings")
  .option("--max-context <n>", "largest context the session may hold", number("int"))
  .addOption(kvMemoryOption());
hybridFlags(generateCommand, "LightTransfer hybrid mode")
  .option("--stats", "print throughput, KV-cache and hybrid statistics at the end")
  .option(
    "--logprobs <k>",
    "write each token's log-probability and its k most likely alternatives to stderr, a JSON line per token",
    number("int"),
  )
  .action(async (o) => {
    if (o.prompt === undefined && o.ids === undefined) throw new Error("generate needs a prompt: --prompt <text> or --ids <ids>");
    if (o.chat && o.ids) throw new Error("--chat wraps a text prompt; --ids are given to the model as they are");
    const hybrid = hybridFromFlags(o);
    const signal = abortOnSigint();
    const model = await loadWithProgress(o.model, o.device, signal, o.tokenizer === false ? false : undefined, {
      dtype: o.dtype,
      kvCacheBytes: o.kvMemory,
    });
    try {
      const session = model.createSession({ maxContext: o.maxContext, hybrid });
      const prompt = o.ids ?? (o.chat ? [{ role: "user", content: o.prompt }] : o.prompt);
      let first = true;
      for await (const chunk of session.generate(prompt, {
        maxNewTokens: o.maxNewTokens,
        temperature: o.temperature,
        topK: o.topK,
        topP: o.topP,
        repetitionPenalty: o.repetitionPenalty,
        seed: o.seed,
        stop: o.stop,
        logprobs: o.logprobs,
        signal,
      })) {
        for (const entry of chunk.logprobs ?? []) process.stderr.write(`${JSON.stringify(entry)}\n`);
        if (model.hasTokenizer) process.stdout.write(chunk.text);
        else if (chunk.tokens.length) process.stdout.write(`${first ? "" : ","}${chunk.tokens.join(",")}`);
        first &&= chunk.tokens.length === 0;
      }
      process.stdout.write("\n");
      if (o.stats) {
        const s = session.stats;
        process.stderr.write(
          `prompt ${s.promptTokens} tok at ${s.prefillTokensPerSecond.toFixed(1)} tok/s, generated ${s.generatedTokens} tok at ` +
            `${s.decodeTokensPerSecond.toFixed(1)} tok/s, KV ${(s.kvBytes / 2 ** 20).toFixed(2)} MiB on ${model.device}, ` +
            `hybrid ${s.hybrid.mode}${s.hybrid.pending ? " (choice pending)" : ""}, lazy layers [${s.hybrid.lazyLayers.join(",")}]\n`,
        );
      }
    } finally {
      await model.dispose();
    }
  });

const serveCommand = program
  .command("serve")
  .description("serve a model over HTTP with an OpenAI-compatible API (completions, chat completions), batching requests continuously")
  .requiredOption("-m, --model <dir>", "model directory (config.json, *.safetensors, tokenizer.json)")
  .addOption(new Option("-d, --device <device>", "cpu, cuda or cuda:N (default: cuda if available)"))
  .addOption(dtypeOption())
  .option("--model-name <name>", "the model's name in requests and /v1/models (default: the directory's name)")
  .option("--host <host>", "address to listen on", "127.0.0.1")
  .option("--port <port>", "port to listen on", number("int"), 8080)
  .addOption(kvMemoryOption())
  .option("--page-size <n>", "tokens per KV page", number("int"), defaultPageSize);
hybridFlags(serveCommand, "default LightTransfer hybrid mode of requests")
  .option("--max-context <n>", "most tokens (prompt + generated) per request", number("int"))
  .option("--max-queue <n>", "requests that may wait; more are answered 429", number("int"), 256)
  .option("--max-running <n>", "most sequences decoded together", number("int"), 256)
  .option(
    "--step-tokens <n>",
    "about the tokens per scheduler step (decode tokens + prompt tokens through every layer; at least one prefill chunk through one layer; default 512, 64 on the CPU)",
    number("int"),
  )
  .option(
    "--prefill-chunk <n>",
    "prompt tokens per prefill chunk, the smallest piece of a prompt a step runs through a layer (default: the model's, at most 16384; 512 on the CPU)",
    number("int"),
  )
  .option("--log", "log every request (fastify's logger)")
  .action(async (o) => {
    const hybrid = hybridFromFlags(o);
    const signal = abortOnSigint();
    const model = await loadWithProgress(o.model, o.device, signal, undefined, {
      kvCacheBytes: o.kvMemory,
      pageSize: o.pageSize,
      dtype: o.dtype,
    });
    const server = await createServer(model, {
      modelName: o.modelName,
      hybrid,
      maxContext: o.maxContext,
      maxQueue: o.maxQueue,
      maxRunning: o.maxRunning,
      stepTokens: o.stepTokens,
      prefillChunk: o.prefillChunk,
      logger: o.log ?? false,
    });
    const url = await server.listen({ host: o.host, port: o.port });
    process.stderr.write(
      `serving ${o.model} on ${url} (${model.device}, KV pool ${model.pool.numPages} pages of ${model.pool.pageSize} tokens, hybrid ${hybrid.mode})\n`,
    );
    // Ctrl-C (or SIGTERM) ends what runs (503), stops listening and frees the model.
    const stop = async () => {
      await server.close();
      await model.dispose();
    };
    signal.addEventListener("abort", () => void stop());
    process.once("SIGTERM", () => void stop());
  });

/** A comma-separated list of integers (token ids, layers); the library checks their ranges. */
function idsArg(value: string): number[] {
  const parts = value.split(",").map((p) => p.trim());
  if (parts.some((p) => !/^-?\d+$/.test(p))) throw new InvalidArgumentError(`not a comma-separated list of integers: ${value}`);
  return parts.map(Number);
}

/** Adds the hybrid flags (--hybrid, --full-layers, --sink, --window, --lazy-layers, --layer-file) read by hybridFromFlags. */
function hybridFlags(command: Command, modeDescription: string): Command {
  return command
    .addOption(new Option("--hybrid <mode>", modeDescription).choices(["off", "auto", "fixed"]).default("off"))
    .option("--full-layers <p>", "layers kept full (auto): fraction, percentage or count", fullLayersArg, 0.5)
    .option("--sink <n>", "sink tokens of the lazy layers", number("int"), streamingDefaults.sink)
    .option("--window <n>", "recent-window tokens of the lazy layers", number("int"), streamingDefaults.window)
    .option("--lazy-layers <layers>", "lazy layers of fixed mode, e.g. 0,2,5", idsArg)
    .addOption(
      new Option("--layer-file <file>", "lazy layers, sink and window of fixed mode from a calibrate layer file").conflicts([
        "lazyLayers",
        "sink",
        "window",
      ]),
    );
}

/** The hybrid options from the flags hybridFlags adds. */
function hybridFromFlags(o: {
  hybrid: "off" | "auto" | "fixed";
  fullLayers: number | `${number}%`;
  sink: number;
  window: number;
  lazyLayers?: number[];
  layerFile?: string;
}): HybridOptions {
  if (o.hybrid !== "fixed" && (o.lazyLayers || o.layerFile)) throw new Error("--lazy-layers and --layer-file are for --hybrid fixed");
  if (o.hybrid === "fixed") {
    if (o.layerFile) return layerFileOptions(readLayerFile(o.layerFile));
    if (!o.lazyLayers) throw new Error("--hybrid fixed needs --lazy-layers <layers> or --layer-file <file>");
    return { mode: "fixed", lazyLayers: o.lazyLayers, sink: o.sink, window: o.window };
  }
  return { mode: o.hybrid, fullLayers: o.fullLayers, sink: o.sink, window: o.window };
}

/**
 * A progress bar on stderr, redrawn in place on a terminal. Elsewhere (a log file, CI) work that
 * runs for minutes (`everyTenSeconds`) writes a line every ten seconds, so that it still shows
 * that it goes on; loading, seconds long, writes nothing there.
 */
function progressBar(format: string, everyTenSeconds = false): SingleBar {
  return new SingleBar({ format, hideCursor: true, stream: process.stderr, noTTYOutput: everyTenSeconds, notTTYSchedule: 10_000 });
}

/** Loads a model with a progress bar on stderr and Ctrl-C to abort. */
async function loadWithProgress(
  dir: string,
  device: string | undefined,
  signal: AbortSignal,
  tokenizer?: boolean,
  pool: { kvCacheBytes?: number; pageSize?: number; dtype?: DType } = {},
): Promise<Model> {
  const bar = progressBar("loading {bar} {percentage}% | {value}/{total} MiB");
  let started = false;
  const mib = (b: number) => Math.round(b / 2 ** 20);
  return loadModel(dir, {
    device: device as DeviceName | undefined,
    signal,
    tokenizer,
    ...pool,
    onProgress: (p) => {
      if (!started) bar.start(mib(p.totalBytes), 0);
      started = true;
      bar.update(mib(p.loadedBytes));
    },
  }).finally(() => started && bar.stop());
}

function abortOnSigint(): AbortSignal {
  const controller = new AbortController();
  process.once("SIGINT", () => controller.abort(new Error("interrupted")));
  return controller.signal;
}

/** Creates directory `dir` (and its parents) for a command's output; refuses a path that is a file. */
function makeOutputDirectory(dir: string, flag: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "EEXIST" || code === "ENOTDIR" ? "a file is in the way" : (err as Error).message;
    throw new Error(`${flag} ${dir}: cannot make this directory for the results (${why}); give a directory's path`);
  }
}

/** Says on stderr that a context (`name` value) reaches past the positions the model was trained on; `also` goes before that. */
function notePastPositions(name: string, context: number | undefined, maxPositions: number, also = ""): void {
  if (context !== undefined && context > maxPositions)
    console.warn(
      `note: ${name} ${context} is beyond the model's max_position_embeddings (${maxPositions}): ` +
        `${also}the model was not trained on positions that far`,
    );
}

/** Prompts of a prompt file: separated by lines holding only "---". */
function readPrompts(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    throw new Error(`--prompt-file ${file}: cannot be read (${(err as Error).message})`);
  }
  const prompts = text
    .split(/^---$/m)
    .map((p) => p.trim())
    .filter((p) => p.length > 0);
  if (!prompts.length)
    throw new Error(`--prompt-file ${file}: no prompts (a prompt file holds prompts separated by lines holding only ---)`);
  return prompts;
}

/**
 * Throws unless `file` can be written: called before the model loads, so that a mistyped path
 * fails at once rather than after the whole run. The file itself is left alone until then.
 */
function checkWritable(file: string, flag: string): void {
  const dir = path.dirname(path.resolve(file));
  const problem = (() => {
    if (!fs.existsSync(dir)) return `its directory ${dir} does not exist`;
    if (!fs.statSync(dir).isDirectory()) return `${dir} is not a directory`;
    if (fs.existsSync(file) && fs.statSync(file).isDirectory()) return "it is a directory";
    try {
      fs.accessSync(fs.existsSync(file) ? file : dir, fs.constants.W_OK);
    } catch {
      return "permission denied";
    }
  })();
  if (problem) throw new Error(`${flag} ${file}: cannot write there, ${problem}; give a file in an existing, writable directory`);
}

/** --dtype, the weights' dtype (loadModel's dtype): also what converts a checkpoint that mixes dtypes. */
function dtypeOption(): Option {
  return new Option("--dtype <dtype>", "weights' dtype (default: bf16 on CUDA, as stored on the CPU)").choices(["f32", "f16", "bf16"]);
}

/** --kv-memory, the size of the KV page pool, as the commands that load a model for many sequences take it. */
function kvMemoryOption(): Option {
  return new Option(
    "--kv-memory <bytes>",
    "KV page pool size, e.g. 40GiB (default: half the free GPU memory after the weights; 512 MiB on the CPU)",
  ).argParser(bytesArg);
}

function bytesArg(value: string): number {
  try {
    return parseByteSize(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

function fullLayersArg(value: string): number | `${number}%` {
  return value.endsWith("%") ? (value as `${number}%`) : number("float")(value);
}

program
  .command("plan")
  .description("KV memory per sequence, full and hybrid, and the largest batch a memory budget holds")
  .requiredOption("-m, --model <dir>", "model directory")
  .requiredOption("-c, --context <tokens>", "tokens per sequence", number("int"))
  .requiredOption("--memory <bytes>", "device memory for weights + KV (e.g. 80GB)", bytesArg)
  .option("--full-layers <p>", "layers kept full: fraction, percentage or count", fullLayersArg, 0.5)
  .option("--sink <n>", "sink tokens", number("int"), streamingDefaults.sink)
  .option("--window <n>", "recent-window tokens", number("int"), streamingDefaults.window)
  .option("--page-size <n>", "tokens per KV page", number("int"), defaultPageSize)
  .addOption(
    new Option("--device <kind>", "where the model runs: cuda (16-bit weights and KV cache) or cpu (weights as stored, f32 KV cache)")
      .choices(["cuda", "cpu"])
      .default("cuda"),
  )
  .action((o) => {
    const config = readConfig(o.model);
    // loadModel's defaults: CUDA holds the weights and the cache in bf16 (or f16), the CPU keeps
    // the stored weights and computes in f32.
    const kvDType: DType = o.device === "cpu" ? "f32" : "bf16";
    const checkpoint = new Checkpoint(o.model);
    let weightBytes = 0;
    try {
      for (const f of checkpoint.files)
        for (const e of f.entries.values()) weightBytes += o.device === "cpu" ? e.end - e.begin : e.shape.reduce((a, b) => a * b, 1) * 2;
    } finally {
      checkpoint.close();
    }
    const { fullLayers } = resolveHybrid({ mode: "auto", fullLayers: o.fullLayers, sink: o.sink, window: o.window }, config.layers);
    const plan = planMemory(config, {
      context: o.context,
      memoryBytes: o.memory,
      weightBytes,
      fullLayers,
      sink: o.sink,
      window: o.window,
      pageSize: o.pageSize,
      dtype: kvDType,
    });
    const gib = (b: number) =>
      b >= 2 ** 30
        ? `${(b / 2 ** 30).toFixed(2)} GiB`
        : b >= 2 ** 20
          ? `${(b / 2 ** 20).toFixed(2)} MiB`
          : `${(b / 2 ** 10).toFixed(1)} KiB`;
    console.log(
      `${config.architecture}: ${config.layers} layers, ${config.kvHeads} KV heads × ${config.headDim}, bf16 weights ${gib(weightBytes)}`,
    );
    console.log(
      `context ${o.context} tokens, memory ${gib(o.memory)}, ${fullLayers} full layers, sink ${o.sink}, window ${o.window}, page ${o.pageSize} tokens (${plan.pageBytes} B), KV in ${kvDType} on ${o.device}`,
    );
    console.log(`KV pool: ${plan.poolPages} pages = ${gib(plan.poolBytes)}`);
    // What makes the plan's figures moot goes to stderr, so stdout stays the plan.
    if (o.memory <= weightBytes)
      console.warn(`note: --memory ${gib(o.memory)} does not cover the weights (${gib(weightBytes)}): no KV pool fits`);
    else if (plan.poolPages < config.layers)
      console.warn(
        `note: a sequence needs a KV page in each of the ${config.layers} layers; the pool beside the weights holds ${plan.poolPages}`,
      );
    notePastPositions("context", o.context, config.maxPositionEmbeddings, "a session holds it only when given a larger maxContext, and ");
    const hybrid = plan.hybrid;
    if (!hybrid) {
      console.log(`KV per sequence: ${gib(plan.full.bytes)} (a sliding window of ${config.slidingWindow} tokens in every layer)`);
      console.log(`largest batch: ${plan.full.maxBatch}; hybrid: not applicable, this model has no full-attention layer to make lazy`);
      return;
    }
    console.log(
      `KV per sequence: full ${gib(plan.full.bytes)}, hybrid ${gib(hybrid.bytes)} (${((100 * hybrid.bytes) / plan.full.bytes).toFixed(1)}%)`,
    );
    console.log(`largest batch: full ${plan.full.maxBatch}, hybrid ${hybrid.maxBatch}`);
  });

/** The lazy-ratio options inspect and calibrate share. */
function withRatioOptions(command: Command): Command {
  return command
    .option("--full-layers <p>", "layers kept full: fraction, percentage or count", fullLayersArg, 0.5)
    .option("--sink <n>", "sink tokens", number("int"), streamingDefaults.sink)
    .option("--window <n>", "recent-window tokens", number("int"), streamingDefaults.window)
    .option("--last-queries <n>", "queries whose attention defines the ratio", number("int"), streamingDefaults.lastQueries);
}

withRatioOptions(program.command("inspect"))
  .description("per-layer lazy ratios of prompts and the layers auto mode would make lazy; writes a heatmap")
  .requiredOption("-m, --model <dir>", "model directory")
  .requiredOption("-f, --prompt-file <file>", "prompts, separated by lines holding only ---")
  .option("-d, --device <device>", "cpu, cuda or cuda:N")
  .addOption(dtypeOption())
  .option("--heatmap <file>", "SVG heatmap to write (layers × heads for one prompt, layers × prompts for several)", "lazy-ratios.svg")
  .option("--max-context <n>", "longest prompt in tokens (default: the model's max_position_embeddings)", number("int"))
  .addOption(kvMemoryOption())
  .action(async (o) => {
    const prompts = readPrompts(o.promptFile);
    checkWritable(o.heatmap, "--heatmap");
    const signal = abortOnSigint();
    const model = await loadWithProgress(o.model, o.device, signal, undefined, { dtype: o.dtype, kvCacheBytes: o.kvMemory });
    notePastPositions("--max-context", o.maxContext, model.config.maxPositionEmbeddings);
    try {
      const hybrid = { mode: "auto" as const, fullLayers: o.fullLayers, sink: o.sink, window: o.window, lastQueries: o.lastQueries };
      const columns: Array<Array<number | undefined>> = [];
      let lastHeads: Array<Float32Array | undefined> = [];
      let lazy = new Set<number>();
      for (const [i, prompt] of prompts.entries()) {
        const session = model.createSession({ hybrid, maxContext: o.maxContext });
        try {
          try {
            for await (const _ of session.generate(prompt, { maxNewTokens: 0, signal }));
          } catch (err) {
            if (signal.aborted) throw err;
            throw new Error(`prompt ${i} of ${o.promptFile}: ${(err as Error).message}`, { cause: err });
          }
          const stats = session.stats;
          const h = stats.hybrid;
          if (h.pending) {
            console.log(`prompt ${i}: ${stats.promptTokens} tokens, not longer than sink + window (${ringSize(o)}): no ratios yet`);
            columns.push(new Array(model.config.layers).fill(undefined));
            continue;
          }
          console.log(`prompt ${i}: ${stats.promptTokens} tokens; lazy layers ${h.lazyLayers.join(", ")}`);
          console.log(
            h.ratios
              .map((r, l) => `  layer ${String(l).padStart(3)}  ${r!.toFixed(4)}${h.lazyLayers.includes(l) ? "  lazy" : ""}`)
              .join("\n"),
          );
          columns.push(h.ratios);
          lastHeads = h.headRatios;
          lazy = new Set(h.lazyLayers);
        } finally {
          session.dispose();
        }
      }
      if (!columns.some((c) => c.some((r) => r !== undefined)))
        throw new Error(
          `no prompt is longer than sink + window (${ringSize(o)} tokens), so none has lazy ratios and there is no heatmap to draw: give longer prompts or a smaller --sink/--window`,
        );
      const single = prompts.length === 1;
      const values = single
        ? lastHeads.map((heads) => (heads ? Array.from(heads) : []))
        : Array.from({ length: model.config.layers }, (_, l) => columns.map((c) => c[l]));
      fs.writeFileSync(
        o.heatmap,
        heatmapSvg({
          title: `lazy ratio, ${model.dir} (sink ${o.sink}, window ${o.window}, last ${o.lastQueries} queries)`,
          values,
          rowLabel: "layer",
          columnLabel: single ? "head" : "prompt",
          marked: single ? lazy : undefined,
        }),
      );
      console.log(`heatmap: ${o.heatmap}`);
    } finally {
      await model.dispose();
    }
  });

withRatioOptions(program.command("calibrate"))
  .description("run auto selection over prompts and write the layer file fixed mode reads")
  .requiredOption("-m, --model <dir>", "model directory")
  .requiredOption("-f, --prompt-file <file>", "prompts, separated by lines holding only ---")
  .requiredOption("-o, --out <file>", "layer file (JSON) to write")
  .option("-d, --device <device>", "cpu, cuda or cuda:N")
  .addOption(dtypeOption())
  .option("--max-context <n>", "longest prompt in tokens (default: the model's max_position_embeddings)", number("int"))
  .addOption(kvMemoryOption())
  .action(async (o) => {
    const prompts = readPrompts(o.promptFile);
    checkWritable(o.out, "-o");
    const signal = abortOnSigint();
    const model = await loadWithProgress(o.model, o.device, signal, undefined, { dtype: o.dtype, kvCacheBytes: o.kvMemory });
    notePastPositions("--max-context", o.maxContext, model.config.maxPositionEmbeddings);
    try {
      const bar = progressBar("calibrating {bar} {value}/{total} prompts", true);
      bar.start(prompts.length, 0);
      const file = await calibrate(model, prompts, {
        hybrid: { fullLayers: o.fullLayers, sink: o.sink, window: o.window, lastQueries: o.lastQueries },
        maxContext: o.maxContext,
        onProgress: (done) => bar.update(done),
        signal,
      }).finally(() => bar.stop());
      fs.writeFileSync(o.out, `${JSON.stringify(file, null, 2)}\n`);
      const skipped = prompts.length - file.prompts;
      const from = skipped
        ? `${file.prompts} of ${prompts.length} prompts; ${skipped} not longer than sink + window (${ringSize(o)} tokens)`
        : `${file.prompts} prompts`;
      console.log(`lazy layers ${file.lazyLayers.join(", ")} (from ${from}) written to ${o.out}`);
    } finally {
      await model.dispose();
    }
  });

/** A comma-separated list of numbers (contexts, depths, fractions); the harness checks their ranges. */
function numbersArg(value: string): number[] {
  const parts = value.split(",").map((p) => p.trim());
  const numbers = parts.map(Number);
  if (parts.some((p) => p === "") || numbers.some((n) => !Number.isFinite(n)))
    throw new InvalidArgumentError(`not a comma-separated list of numbers: ${value}`);
  return numbers;
}

program
  .command("eval")
  .description("RULER-style quality evaluation (passkey, needle-in-a-haystack, variable tracking, perplexity) in each attention mode")
  .requiredOption("-m, --model <dir>", "model directory (config.json, *.safetensors, tokenizer.json)")
  .option("-d, --device <device>", "cpu, cuda or cuda:N")
  .addOption(dtypeOption())
  .option(
    "--config <file>",
    "evaluation settings (JSON) over the built-in defaults; flags override it (bench/quality/config.json of the repository checkout, not of the npm package, writes the defaults out)",
  )
  .option("-c, --context <tokens>", "prompt lengths, e.g. 4096,32768", numbersArg)
  .option("--tasks <tasks>", "passkey, niah-multikey, niah-multivalue, variable-tracking (comma-separated)", (v) =>
    v.split(",").map((t) => t.trim()),
  )
  .option("--depths <depths>", "needle depths in [0, 1], e.g. 0,0.5,1", numbersArg)
  .option("--seeds <n>", "samples per task, context and depth (seeds 0 .. n-1)", countArg(1, mostSeeds))
  .option("--full-layers <fractions>", "auto mode at each of these shares of full layers, e.g. 0.25,0.5", numbersArg)
  .option("--random-seeds <n>", "random lazy layers with seeds 0 .. n-1", countArg(0, mostSeeds))
  .option("--layer-file <file>", "also evaluate fixed mode with this calibrate layer file")
  .option("--sink <n>", "sink tokens of the lazy layers", number("int"))
  .option("--window <n>", "recent-window tokens of the lazy layers", number("int"))
  .option("--no-streaming-all", "leave out the every-layer-streaming baseline")
  .option("--no-perplexity", "leave out perplexity on held-out text")
  .addOption(new Option("--chat <when>", "wrap prompts in the chat template").choices(["auto", "on", "off"]))
  .option("--extra-tokens <n>", "tokens generated past the answer's length (default 8; RULER's budget: 128)", number("int"))
  .option("-o, --out <dir>", "where eval.json, eval.md and the SVG plots go", "eval-results")
  .addOption(kvMemoryOption())
  .action(async (o) => {
    const fromFile: EvalSettings = o.config ? readEvalSettings(o.config) : {};
    const count = (n: number | undefined) => (n === undefined ? undefined : Array.from({ length: n }, (_, i) => i));
    const flags: EvalSettings = {
      contexts: o.context,
      tasks: o.tasks,
      depths: o.depths,
      seeds: count(o.seeds),
      autoFractions: o.fullLayers,
      randomSeeds: count(o.randomSeeds),
      layerFile: o.layerFile,
      sink: o.sink,
      window: o.window,
      // commander sets the --no- flags to true unless given; only a given one overrides the file.
      streamingAll: o.streamingAll === false ? false : undefined,
      perplexity: o.perplexity === false ? false : undefined,
      chat: o.chat === undefined ? undefined : o.chat === "auto" ? "auto" : o.chat === "on",
      extraTokens: o.extraTokens,
    };
    // Checked against config.json before the weights load, so that a bad setting fails at once;
    // chat "auto" is settled once the tokenizer is loaded and does not change what is checked.
    const settled = resolveEvalConfig([fromFile, flags], false);
    const modelConfig = readConfig(o.model);
    checkEvalSetup(settled, modelConfig);
    const chatAuto = (flags.chat ?? fromFile.chat ?? defaultEvalSettings.chat) === "auto";
    // What the tokenizer alone decides (chat, a context too short for a task) before the weights load.
    const tokenizer = Tokenizer.fromDirectory(o.model);
    const config = chatAuto ? { ...settled, chat: tokenizer.hasChatTemplate } : settled;
    try {
      checkEvalPrompts(config, tokenizer, modelConfig.maxPositionEmbeddings);
    } finally {
      await tokenizer.dispose();
    }
    // Made before the run, so that a path it cannot be fails before the run rather than after.
    makeOutputDirectory(o.out, "-o");
    const signal = abortOnSigint();
    const model = await loadWithProgress(o.model, o.device, signal, undefined, { kvCacheBytes: o.kvMemory, dtype: o.dtype });
    try {
      const bar = progressBar("evaluating {bar} {value}/{total} | {step}", true);
      let started = false;
      const report = await runEval(model, config, {
        signal,
        onProgress: ({ done, total, step }) => {
          if (!started) bar.start(total, 0, { step });
          started = true;
          bar.update(done, { step });
        },
      }).finally(() => started && bar.stop());
      const table = markdownReport(report);
      fs.writeFileSync(path.join(o.out, "eval.json"), `${JSON.stringify(report, null, 2)}\n`);
      fs.writeFileSync(path.join(o.out, "eval.md"), table);
      fs.writeFileSync(path.join(o.out, "accuracy-vs-context.svg"), accuracyVsContextSvg(report));
      fs.writeFileSync(path.join(o.out, "accuracy-vs-fraction.svg"), accuracyVsFractionSvg(report));
      process.stdout.write(table);
      process.stderr.write(`written to ${o.out}: eval.json, eval.md, accuracy-vs-context.svg, accuracy-vs-fraction.svg\n`);
    } finally {
      await model.dispose();
    }
  });

program
  .command("devices")
  .description("list the CPU and CUDA devices, and why CUDA is unavailable if it is")
  .action(() => {
    for (const d of devices()) {
      const gib = (d.totalMemory / 2 ** 30).toFixed(1);
      console.log(
        d.type === "cuda"
          ? `${d.id}  ${d.name}  ${gib} GiB  compute ${d.computeCapability}`
          : `cpu     ${d.name}  ${gib} GiB  ${d.threads} threads`,
      );
    }
    const cuda = cudaStatus();
    if (!cuda.available) console.log(`CUDA unavailable: ${cuda.reason}`);
  });

// A reader that closed the pipe (`| head`) has what it wanted: stop quietly, as other
// command-line tools do, rather than with the write's stack trace.
for (const stream of [process.stdout, process.stderr])
  stream.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code !== "EPIPE") throw err;
    process.exit(0);
  });

program.parseAsync().catch((err: Error) => {
  // The library's remedies name its options; every command that runs a model sizes its pool with a flag.
  const pool = err instanceof PoolExhaustedError || err.cause instanceof PoolExhaustedError || /\bkvCacheBytes\b/.test(err.message);
  const flag = pool ? " (on the command line, the pool's size is --kv-memory)" : "";
  process.stderr.write(`lighttransfer: ${err.message}${flag}\n`);
  process.exit(1);
});
