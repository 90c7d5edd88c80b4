// Hybrid mode on CUDA against the same run on the CPU in bf16 (the CPU run is itself checked
// against a float64 reference in test/hybrid.test.ts): lazy ratios, the layers chosen, and the
// decode logits.
import { loadModel, type Model } from "../../lib";
import { readReference } from "../helpers/fixtures";
import { describeWithCuda, relError } from "../helpers/gpu";
import { runHybrid } from "../helpers/hybrid-run";
import { fixtureDir } from "../helpers/reference-model";

const describeGpu = describeWithCuda("hybrid");

describeGpu("hybrid mode on CUDA equals the CPU run", () => {
  let cpu: Model, gpu: Model;
  beforeAll(async () => {
    // bf16 activations and KV on the CPU too, so the two runs round at the same places.
    cpu = await loadModel(fixtureDir("llama-tiny"), { device: "cpu", kvCacheBytes: 8 * 2 ** 20, pageSize: 4, computeDType: "bf16" });
    gpu = await loadModel(fixtureDir("llama-tiny"), { device: "cuda:0", kvCacheBytes: 8 * 2 ** 20, pageSize: 4 });
  });
  afterAll(async () => {
    await cpu?.dispose();
    await gpu?.dispose();
  });

  const run = runHybrid;

  test.each([
    ["auto, long prompt", { mode: "auto", fullLayers: 1, sink: 2, window: 6, lastQueries: 4 }, 1],
    ["auto, short prompt (deferred)", { mode: "auto", fullLayers: 1, sink: 2, window: 14, lastQueries: 4 }, 0],
    ["fixed, streaming prefill", { mode: "fixed", lazyLayers: [0, 2], prefill: "streaming", sink: 2, window: 6 }, 1],
  ])("%s", (label, hybrid, caseIndex) => {
    const ref = readReference("llama-tiny").cases[caseIndex as number];
    const cont = ref.greedy.slice(0, 10);
    const a = run(cpu, hybrid, ref.ids, cont),
      b = run(gpu, hybrid, ref.ids, cont);
    // Both runs round activations to bf16 (2^-9 relative) at the same points; what differs is
    // f32 accumulation order and the GPU kernels' bf16 rounding of softmax weights: ratios agree
    // within 5e-3. For the logits the yardstick is measured: the same two runs in mode "off"
    // disagree by some amount; cutting layers to rings may not add more than half of it again.
    a.state.ratios.forEach((r, l) => {
      if (r === undefined)
        expect(b.state.ratios[l]).toBeUndefined(); // fixed mode measures nothing
      else expect(Math.abs(b.state.ratios[l]! - r)).toBeLessThan(5e-3);
    });
    // The chosen layers agree unless two ratios are within that error of each other.
    const sorted = [...a.state.ratios].filter((r): r is number => r !== undefined).sort();
    const separated = sorted.every((r, i) => i === 0 || r - sorted[i - 1] > 1e-2);
    if (separated) expect(b.state.lazyLayers).toEqual(a.state.lazyLayers);
    expect(b.kinds).toEqual(b.kinds.map((_, l) => (b.state.lazyLayers.includes(l) ? "streaming" : "full")));
    const offCpu = run(cpu, { mode: "off" }, ref.ids, cont),
      offGpu = run(gpu, { mode: "off" }, ref.ids, cont);
    const offError = Math.max(...offCpu.rows.map((row, i) => relError(offGpu.rows[i], row)));
    process.stderr.write(`${label}: bf16 CPU vs CUDA logits disagree by ${offError.toFixed(4)} in mode off\n`);
    if (separated) a.rows.forEach((row, i) => expect(relError(b.rows[i], row)).toBeLessThan(1.5 * offError));
  });
});
