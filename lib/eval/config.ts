// The evaluation's settings: defaults (the same as bench/quality/config.json), a JSON file of
// them, and the command line's overrides, merged and checked into one EvalConfig.
import * as fs from "node:fs";
import * as path from "node:path";
import { readLayerFile } from "../api/calibrate";
import { streamingDefaults } from "../common/geometry";
import { rejectUnknownOptions, show } from "../common/validate";
import type { EvalConfig } from "./harness";
import { taskNames } from "./tasks";

/** An evaluation config as a file or the command line gives it: any field, chat "auto", the layer file as a path. */
export type EvalSettings = Partial<Omit<EvalConfig, "chat" | "layerFile">> & { chat?: boolean | "auto"; layerFile?: string };

/**
 * What `lighttransfer eval` runs unless told otherwise (bench/quality/config.json holds the same).
 * @example const quick: EvalSettings = { contexts: defaultEvalSettings.contexts.filter((c) => c <= 8192), seeds: [0] }; // a smoke run
 */
export const defaultEvalSettings: Readonly<Required<Omit<EvalSettings, "layerFile">>> = Object.freeze({
  tasks: [...taskNames],
  contexts: [4096, 8192, 16384, 32768],
  depths: [0, 0.25, 0.5, 0.75, 1],
  seeds: [0, 1, 2, 3],
  autoFractions: [0.25, 0.5, 0.75],
  randomSeeds: [0, 1, 2],
  randomFraction: 0.5,
  streamingAll: true,
  perplexity: true,
  sink: streamingDefaults.sink,
  window: streamingDefaults.window,
  chat: "auto",
  extraTokens: 8,
});

const knownKeys = [...Object.keys(defaultEvalSettings), "layerFile"];

/**
 * Reads an evaluation settings file (JSON; any field of EvalSettings), naming the file and the
 * field in errors. A relative `layerFile` is taken from the settings file's directory, as the
 * file's author sees it.
 * @example const settings = readEvalSettings("bench/quality/config.json");
 */
export function readEvalSettings(file: string): EvalSettings {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (err) {
    throw new Error(`${file}: cannot be read as an evaluation config (${(err as Error).message})`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new Error(`${file}: must hold a JSON object, got ${show(raw)}`);
  const unknown = Object.keys(raw).filter((k) => !knownKeys.includes(k));
  if (unknown.length) throw new Error(`${file}: unknown field ${unknown.join(", ")}; the fields are ${knownKeys.join(", ")}`);
  const settings = raw as EvalSettings;
  if (typeof settings.layerFile === "string") settings.layerFile = path.resolve(path.dirname(file), settings.layerFile);
  return settings;
}

/**
 * Settings layered over the defaults (later ones win), chat "auto" settled by whether the
 * tokenizer has a chat template, and the layer file read.
 * @example const config = resolveEvalConfig([readEvalSettings(file), { contexts: [32768] }], model.tokenizer.hasChatTemplate);
 */
export function resolveEvalConfig(layers: readonly EvalSettings[], hasChatTemplate: boolean): EvalConfig {
  const merged: EvalSettings = { ...defaultEvalSettings };
  for (const l of layers) {
    rejectUnknownOptions(l, knownKeys, "eval: settings");
    for (const [k, v] of Object.entries(l)) if (v !== undefined) (merged as Record<string, unknown>)[k] = v;
  }
  const { chat, layerFile, ...rest } = merged as Required<Omit<EvalSettings, "layerFile">> & { layerFile?: string };
  if (chat !== "auto" && typeof chat !== "boolean") throw new RangeError(`eval: chat must be true, false or "auto", got ${show(chat)}`);
  return {
    ...rest,
    chat: chat === "auto" ? hasChatTemplate : chat,
    layerFile: layerFile === undefined ? undefined : readLayerFile(layerFile),
  };
}
