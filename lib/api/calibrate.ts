// Calibration: run auto selection over a set of prompts, count how often each layer is lazy, and
// keep the most frequent L − P as a layer file that fixed mode reads.
import * as fs from "node:fs";
import { ringSize, type StreamingShape } from "../common/geometry";
import { optionalFunction, optionalSignal, optionsObject, rejectUnknownOptions } from "../common/validate";
import { whileLive } from "../generate/loop";
import { checkSessionOptions } from "../generate/options";
import { checkPromptFits, promptIdsAsync } from "../generate/prompt";
import type { HybridOptions } from "../hybrid/options";
import { expectModel, type Model } from "./model";

/** A layer file: the streaming shape it was calibrated with, and the layers it chose. */
export interface LayerFile extends StreamingShape {
  model: string;
  layers: number;
  fullLayers: number;
  prompts: number;
  /** counts[i]: prompts for which layer i was lazy. */
  counts: number[];
  /** The L − P layers lazy most often (ties: lower layer first). */
  lazyLayers: number[];
}

/** calibrate's options: the auto mode's shape to measure with, the longest prompt, progress and cancellation. */
export interface CalibrateOptions {
  hybrid?: Omit<HybridOptions, "mode" | "lazyLayers" | "prefill" | "seed">;
  /** Longest prompt in tokens (default: the model's max_position_embeddings). */
  maxContext?: number;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

const calibrateOptionNames = ["hybrid", "maxContext", "onProgress", "signal"] satisfies Array<keyof CalibrateOptions>;
/** The hybrid options calibrate passes on: its mode is calibrate's own, and a fixed or random mode's alone take the rest. */
const calibrateHybridNames = ["fullLayers", "sink", "window", "lastQueries"] satisfies Array<keyof HybridOptions>;

/**
 * @example
 * const file = await calibrate(model, prompts, { hybrid: { fullLayers: 0.5 } });
 * fs.writeFileSync("layers.json", JSON.stringify(file, null, 2));
 * const session = model.createSession({ hybrid: { mode: "fixed", ...layerFileOptions(readLayerFile("layers.json")) } });
 */
export async function calibrate(model: Model, prompts: readonly string[], options?: CalibrateOptions): Promise<LayerFile> {
  expectModel(model, "calibrate");
  if (!model.hasTokenizer)
    throw new Error(
      "calibrate: its prompts are text, and this model was loaded without a tokenizer; load it with one (leave loadModel's tokenizer option out)",
    );
  options = optionsObject(options, "calibrate: options");
  rejectUnknownOptions(options, calibrateOptionNames, "calibrate: options", {
    names: calibrateHybridNames,
    where: "hybrid options, given as calibrate's hybrid: { ... }",
  });
  if (!Array.isArray(prompts) || prompts.some((p) => typeof p !== "string"))
    throw new TypeError("calibrate: prompts must be an array of strings");
  if (prompts.length === 0)
    throw new RangeError("calibrate: no prompts were given; calibrating needs at least one longer than sink + window");
  optionalFunction(options.onProgress, "calibrate: onProgress");
  optionalSignal(options.signal, "calibrate: signal");
  const sessionOptions = {
    hybrid: { ...optionsObject(options.hybrid, "calibrate: hybrid"), mode: "calibrate" as const },
    maxContext: options.maxContext,
  };
  const { maxContext, hybrid: resolved } = checkSessionOptions(sessionOptions, model.decoder, "calibrate");
  // Every prompt encoded and its length checked first, so that one too long is refused by its
  // index before any other runs.
  const encoded: number[][] = [];
  for (const [i, prompt] of prompts.entries()) {
    options.signal?.throwIfAborted();
    const label = `calibrate: prompts[${i}]`;
    const encoding = promptIdsAsync(model.optionalTokenizer, prompt, model.config.vocabSize, label);
    const ids = await whileLive({ name: "model", isLive: () => !model.isDisposed }, encoding, "generation", options.signal);
    checkPromptFits(ids, 0, maxContext, label, "ask for a larger maxContext (calibrate's option; --max-context on the command line)");
    encoded.push(ids);
  }
  const counts = new Array(model.config.layers).fill(0);
  let measured = 0;
  for (const [i, ids] of encoded.entries()) {
    options.signal?.throwIfAborted();
    const session = model.createSession(sessionOptions);
    try {
      for await (const _ of session.generate(ids, { maxNewTokens: 0, signal: options.signal }));
      const state = session.stats.hybrid;
      if (!state.pending) {
        for (const l of state.lazyLayers) counts[l]++;
        measured++;
      }
    } finally {
      session.dispose();
    }
    options.onProgress?.(i + 1, prompts.length);
  }
  if (measured === 0) throw new Error(`no prompt was longer than sink + window (${ringSize(resolved)} tokens): nothing to calibrate on`);
  const order = counts.map((c, l) => ({ c, l })).sort((a, b) => b.c - a.c || a.l - b.l);
  return {
    model: model.dir,
    layers: model.config.layers,
    sink: resolved.sink,
    window: resolved.window,
    lastQueries: resolved.lastQueries,
    fullLayers: resolved.fullLayers,
    prompts: measured,
    counts,
    lazyLayers: order
      .slice(0, model.config.layers - resolved.fullLayers)
      .map((e) => e.l)
      .sort((a, b) => a - b),
  };
}

/**
 * Reads and checks a layer file written by calibrate().
 * @example const { lazyLayers, prompts } = readLayerFile("layers.json"); // what calibration chose, and over how many prompts
 */
export function readLayerFile(file: string): LayerFile {
  let data: LayerFile;
  try {
    data = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (err) {
    throw new Error(`${file}: cannot be read as a layer file (${(err as Error).message})`);
  }
  if (
    typeof data !== "object" ||
    data === null ||
    !Array.isArray(data.lazyLayers) ||
    !Number.isInteger(data.layers) ||
    data.lazyLayers.some((l) => !Number.isInteger(l) || l < 0 || l >= data.layers)
  )
    throw new Error(`${file}: needs 'layers' and a 'lazyLayers' list of layer indices below it`);
  return data;
}

/**
 * Fixed-mode options from a layer file (its sink and window too).
 * @example const session = model.createSession({ hybrid: layerFileOptions(readLayerFile("layers.json")) });
 */
export function layerFileOptions(file: LayerFile): HybridOptions {
  return { mode: "fixed", lazyLayers: file.lazyLayers, sink: file.sink, window: file.window };
}
