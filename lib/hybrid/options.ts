// The `hybrid` session option: which layers become lazy (streaming) and how.

import { type RingShape, ringSize, type StreamingShape, streamingDefaults, streamingLimits } from "../common/geometry";
import { integerIn, rejectUnknownOptions, show } from "../common/validate";

/** How a session picks its lazy (streaming) layers; README "Hybrid mode". */
export type HybridMode = "auto" | "fixed" | "calibrate" | "off" | "streaming-all" | "random";
const modes: readonly HybridMode[] = ["auto", "fixed", "calibrate", "off", "streaming-all", "random"];
const optionNames: readonly string[] = [
  "mode",
  "fullLayers",
  "lazyLayers",
  "prefill",
  "seed",
  "sink",
  "window",
  "lastQueries",
] satisfies Array<keyof HybridOptions>;

/** The lazy layers' ring and the queries that measure a layer: S, W and w_last, `streamingDefaults` where left out. */
export interface HybridOptions extends Partial<StreamingShape> {
  /**
   * auto: measure each layer's lazy ratio during prefill and make the L − P laziest layers streaming
   * (DESIGN.md section 2). fixed: `lazyLayers` are streaming. calibrate: auto, while counting
   * choices (see calibrate()). off: every layer full. streaming-all: every layer streaming
   * (StreamingLLM). random: a seeded random set of L − P layers. Default "off".
   */
  mode?: HybridMode;
  /** Layers kept full (P): a fraction of the layers in [0, 1) or "75%", or a count >= 1. Default 0.5. */
  fullLayers?: number | `${number}%`;
  /** Fixed mode: the lazy layers (0-based), e.g. from a calibration file. */
  lazyLayers?: readonly number[];
  /** fixed / random / streaming-all: prefill the lazy layers with full attention then cut (default), or with the streaming mask. */
  prefill?: "full" | "streaming";
  /** Seed of the random mode (default 0). */
  seed?: number;
}

export interface ResolvedHybrid extends StreamingShape {
  mode: HybridMode;
  /** Layers kept full. */
  fullLayers: number;
  /** The lazy set when it is known up front (fixed, random, streaming-all, off). */
  lazyLayers?: number[];
  prefill: "full" | "streaming";
}

/**
 * A lazy layer's sink and window (`streamingDefaults` where left out), each within its limit and
 * together within the ring's; errors call them by the given names.
 * @example const { sink, window } = checkedRingShape({ window: 256 }, "hybrid.sink", "hybrid.window");
 */
export function checkedRingShape(
  o: Partial<RingShape>,
  sinkName: string,
  windowName: string,
  sumName = `${sinkName} + ${windowName}`,
): RingShape {
  const sink = integerIn(o.sink, sinkName, 0, streamingLimits.sink, streamingDefaults.sink);
  const window = integerIn(o.window, windowName, 1, streamingLimits.window, streamingDefaults.window);
  if (ringSize({ sink, window }) > streamingLimits.ring)
    throw new RangeError(`${sumName} must be at most ${streamingLimits.ring}, got ${sink + window}`);
  return { sink, window };
}

/**
 * Checks every option and settles the defaults for a model of `layers` layers.
 * @example const resolved = resolveHybrid({ mode: "auto", fullLayers: 0.5 }, 32); // resolved.fullLayers === 16
 */
export function resolveHybrid(options: HybridOptions | undefined, layers: number): ResolvedHybrid {
  const o = options === undefined ? {} : options;
  if (typeof o !== "object" || o === null || Array.isArray(o))
    throw new TypeError(`hybrid must be an options object (or left out), got ${show(o)}`);
  rejectUnknownOptions(o, optionNames, "hybrid");
  const mode = o.mode ?? "off";
  if (!modes.includes(mode)) throw new RangeError(`hybrid.mode must be one of ${modes.join(", ")}; got ${show(o.mode)}`);
  const { sink, window } = checkedRingShape(o, "hybrid.sink", "hybrid.window");
  const lastQueries = integerIn(o.lastQueries, "hybrid.lastQueries", 1, streamingLimits.lastQueries, streamingDefaults.lastQueries);
  const fullLayers = resolveFullLayers(o.fullLayers ?? 0.5, layers);
  const prefill = o.prefill ?? "full";
  if (prefill !== "full" && prefill !== "streaming")
    throw new RangeError(`hybrid.prefill must be "full" or "streaming", got ${show(o.prefill)}`);
  let lazyLayers: number[] | undefined;
  switch (mode) {
    case "off":
      lazyLayers = [];
      break;
    case "streaming-all":
      lazyLayers = Array.from({ length: layers }, (_, i) => i);
      break;
    case "fixed": {
      if (!Array.isArray(o.lazyLayers)) throw new TypeError("hybrid.mode 'fixed' needs hybrid.lazyLayers: the layers to make streaming");
      for (const l of o.lazyLayers)
        if (!Number.isInteger(l) || l < 0 || l >= layers)
          throw new RangeError(`hybrid.lazyLayers has ${show(l)}; layers are 0..${layers - 1}`);
      lazyLayers = [...new Set(o.lazyLayers)].sort((a, b) => a - b);
      break;
    }
    case "random":
      lazyLayers = randomLayers(layers, layers - fullLayers, integerIn(o.seed, "hybrid.seed", 0, 2 ** 32 - 1, 0));
      break;
  }
  if (o.lazyLayers !== undefined && mode !== "fixed") throw new RangeError("hybrid.lazyLayers is only for mode 'fixed'");
  if (o.seed !== undefined && mode !== "random") throw new RangeError("hybrid.seed is only for mode 'random'");
  // Mode auto (and calibrate) choose the lazy layers from a prefill in which every layer attends
  // in full; only a lazy set known before the prompt can prefill with the streaming mask.
  if (prefill === "streaming" && (mode === "auto" || mode === "calibrate" || mode === "off"))
    throw new RangeError(
      `hybrid.prefill "streaming" is for modes whose lazy layers are known before the prompt (fixed, random, streaming-all); mode '${mode}' prefills every layer with full attention`,
    );
  return { mode, fullLayers, sink, window, lastQueries, lazyLayers, prefill };
}

/**
 * Layers a sequence with these options keeps full (P): every layer in mode off, the complement
 * of the lazy set where it is known up front, else `fullLayers`.
 * @example keptFullLayers(resolveHybrid({ mode: "fixed", lazyLayers: [0, 2] }, 32), 32) // 30
 */
export function keptFullLayers(hybrid: ResolvedHybrid, layers: number): number {
  if (hybrid.mode === "off") return layers;
  return hybrid.lazyLayers ? layers - hybrid.lazyLayers.length : hybrid.fullLayers;
}

function resolveFullLayers(value: number | string, layers: number): number {
  let count: number;
  if (typeof value === "string") {
    const m = /^(\d+(?:\.\d+)?)%$/.exec(value);
    if (!m || Number(m[1]) > 100) throw new RangeError(`hybrid.fullLayers ${show(value)} is not a percentage between 0% and 100%`);
    count = Math.round((Number(m[1]) / 100) * layers);
  } else if (typeof value === "number" && value >= 0 && value < 1) {
    count = Math.round(value * layers);
  } else if (Number.isInteger(value) && value >= 1 && value <= layers) {
    count = value;
  } else {
    throw new RangeError(`hybrid.fullLayers must be a fraction in [0, 1), a percentage, or a count in [1, ${layers}]; got ${show(value)}`);
  }
  return count;
}

/** A seeded choice of `count` distinct layers out of `layers` (Fisher-Yates on mulberry32). */
export function randomLayers(layers: number, count: number, seed: number): number[] {
  let state = seed >>> 0;
  const random = () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const all = Array.from({ length: layers }, (_, i) => i);
  for (let i = layers - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [all[i], all[j]] = [all[j], all[i]];
  }
  return all.slice(0, count).sort((a, b) => a - b);
}
