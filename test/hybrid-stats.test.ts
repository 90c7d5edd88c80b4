// session.stats.hybrid: a snapshot in every mode (off included), which the caller may change
// without changing the session.
import * as path from "node:path";
import { type HybridOptions, type HybridState, loadModel, type Model } from "../lib";
import { fixtureRoot, readReference } from "./helpers/fixtures";
import { Random } from "./helpers/reference";

const rng = new Random();

const reference = readReference("llama-tiny");
const layers = 3;
let model: Model;
beforeAll(async () => {
  model = await loadModel(path.join(fixtureRoot, "llama-tiny"), { device: "cpu", kvCacheBytes: 4 * 2 ** 20 });
});
afterAll(async () => model?.dispose());

async function tokens(stream: AsyncIterable<{ tokens: number[] }>): Promise<number[]> {
  const out: number[] = [];
  for await (const chunk of stream) out.push(...chunk.tokens);
  return out;
}

/** Every field of the snapshot changed, the per-head ratios in place. */
function vandalize(h: HybridState): void {
  h.mode = "streaming-all";
  h.lazyLayers.push(1);
  h.lazyLayers[0] = 99;
  h.ratios[0] = 7;
  h.ratios.push(8);
  for (const heads of h.headRatios) heads?.fill(42);
  h.headRatios[1] = new Float32Array([3]);
  h.pending = !h.pending;
}

const modes: Array<[string, HybridOptions | undefined]> = [
  ["off (left out)", undefined],
  ["off", { mode: "off" }],
  ["auto", { mode: "auto", fullLayers: 1, sink: 1, window: 3 }],
  ["fixed", { mode: "fixed", lazyLayers: [0, 2], sink: 1, window: 3 }],
];

describe(`seed ${rng.seed}`, () => {
  test.each(modes)("mode %s: stats.hybrid is a fresh copy, and changing it changes nothing", async (_, hybrid) => {
    const prompt = reference.cases[1].ids.slice(0, rng.int(20, 49));
    const options = { maxNewTokens: 4, stopAtEos: false };
    const session = model.createSession({ hybrid });
    const twin = model.createSession({ hybrid });
    try {
      const before = session.stats.hybrid;
      expect(before.mode).toBe(hybrid?.mode ?? "off");
      expect(before.ratios).toHaveLength(layers);
      expect(before.headRatios).toHaveLength(layers);
      await tokens(session.generate(prompt, options));
      await tokens(twin.generate(prompt, options));
      const h = session.stats.hybrid;
      const copy = structuredClone(h);
      expect(session.stats.hybrid).not.toBe(h);
      expect(h).toEqual(twin.stats.hybrid);
      if (hybrid?.mode === "auto") {
        expect(h.pending).toBe(false);
        expect(h.lazyLayers).toHaveLength(layers - 1);
        expect(h.ratios.every((r) => typeof r === "number" && r > 0 && r <= 1)).toBe(true);
        expect(h.headRatios.every((r) => ArrayBuffer.isView(r) && r.length > 0)).toBe(true);
      } else if (hybrid?.mode === "fixed") {
        expect(h).toMatchObject({ mode: "fixed", lazyLayers: [0, 2], pending: false });
      } else {
        expect(h).toEqual({
          mode: "off",
          lazyLayers: [],
          ratios: [undefined, undefined, undefined],
          headRatios: [undefined, undefined, undefined],
          pending: false,
        });
      }
      vandalize(h);
      expect(session.stats.hybrid).toEqual(copy);
      // The session goes on exactly as the twin that nobody touched.
      const more = reference.cases[0].ids;
      expect(await tokens(session.generate(more, options))).toEqual(await tokens(twin.generate(more, options)));
      expect(session.stats.hybrid).toEqual(twin.stats.hybrid);
      expect(session.stats.kvBytes).toBe(twin.stats.kvBytes);
    } finally {
      session.dispose();
      twin.dispose();
    }
  });

  test("generateBatch results carry a hybrid snapshot in every mode", async () => {
    const ids = reference.cases[1].ids;
    const [off] = await model.generateBatch([ids], { maxNewTokens: 2 });
    expect(off.hybrid).toEqual({
      mode: "off",
      lazyLayers: [],
      ratios: [undefined, undefined, undefined],
      headRatios: [undefined, undefined, undefined],
      pending: false,
    });
    const [fixed] = await model.generateBatch([ids], { maxNewTokens: 2, hybrid: { mode: "fixed", lazyLayers: [1], sink: 1, window: 3 } });
    expect(fixed.hybrid).toMatchObject({ mode: "fixed", lazyLayers: [1] });
  });
});
