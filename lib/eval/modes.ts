// The attention modes an evaluation compares, each as the session's `hybrid` option: full
// attention, auto selection at several fractions of full layers, a fixed layer file, random lazy
// layers (several seeds), and every layer streaming.
import { type LayerFile, layerFileOptions } from "../api/calibrate";
import type { StreamingShape } from "../common/geometry";
import { type HybridOptions, resolveHybrid } from "../hybrid/options";

/** The kind of attention mode an evaluation runs (HybridMode without calibrate). */
export type ModeKind = "off" | "auto" | "fixed" | "random" | "streaming-all";

/** One attention mode of an evaluation: its label, its hybrid options and the share of layers it keeps full. */
export interface EvalMode {
  /** How the mode is labelled in tables and plots ("auto 50%", "random 50% #1"). */
  name: string;
  kind: ModeKind;
  /** The session's hybrid option. */
  hybrid: HybridOptions;
  /** Share of the layers kept full: 1 for off, 0 for streaming-all. */
  fullFraction: number;
}

/** Which attention modes an evaluation compares: auto at some fractions of full layers, random sets, the ring shape. */
export interface ModeOptions extends Pick<StreamingShape, "sink" | "window"> {
  /** auto at each of these fractions of full layers. */
  autoFractions: number[];
  /** random lazy layers, at `randomFraction` full layers, once per seed. */
  randomSeeds: number[];
  randomFraction: number;
  /** fixed mode from a calibrated layer file (its own sink and window). */
  layerFile?: LayerFile;
  streamingAll: boolean;
}

const percent = (f: number) => `${Math.round(f * 100)}%`;

/**
 * The modes to compare on a model of `layers` layers, full attention first.
 * @example const modes = evalModes(32, { autoFractions: [0.25, 0.5], randomSeeds: [0, 1], randomFraction: 0.5, streamingAll: true, sink: 4, window: 1020 });
 */
export function evalModes(layers: number, o: ModeOptions): EvalMode[] {
  const shape = { sink: o.sink, window: o.window };
  const fullShare = (hybrid: HybridOptions) => resolveHybrid(hybrid, layers).fullLayers / layers;
  const modes: EvalMode[] = [{ name: "full", kind: "off", hybrid: { mode: "off" }, fullFraction: 1 }];
  for (const fraction of o.autoFractions) {
    const hybrid: HybridOptions = { mode: "auto", fullLayers: fraction, ...shape };
    modes.push({ name: `auto ${percent(fraction)}`, kind: "auto", hybrid, fullFraction: fullShare(hybrid) });
  }
  if (o.layerFile) {
    const hybrid: HybridOptions = { mode: "fixed", ...layerFileOptions(o.layerFile) };
    const full = (layers - o.layerFile.lazyLayers.length) / layers;
    modes.push({ name: `fixed ${percent(full)}`, kind: "fixed", hybrid, fullFraction: full });
  }
  for (const seed of o.randomSeeds) {
    const hybrid: HybridOptions = { mode: "random", fullLayers: o.randomFraction, seed, ...shape };
    modes.push({ name: `random ${percent(o.randomFraction)} #${seed}`, kind: "random", hybrid, fullFraction: fullShare(hybrid) });
  }
  if (o.streamingAll)
    modes.push({ name: "streaming-all", kind: "streaming-all", hybrid: { mode: "streaming-all", ...shape }, fullFraction: 0 });
  return modes;
}
