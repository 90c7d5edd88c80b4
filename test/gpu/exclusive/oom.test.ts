// Running out of GPU memory: a tensor and a KV pool larger than the card, a card filled with
// tensors, a model load and a batch on a full card. Each is a JS error that says what was asked
// for and what to do; nothing stays allocated; and the same process then loads a model and
// generates the tokens the CPU does (no sticky CUDA error, no poisoned pool). These tests fill
// the card, if only for the moment a refused request takes, so they run by themselves.
import * as path from "node:path";
import { devices, loadModel, type Model, memoryUsage, Tensor } from "../../../lib";
import { fixtureRoot, readReference } from "../../helpers/fixtures";
import { collectGarbage } from "../../helpers/gc";
import { describeWithCuda } from "../../helpers/gpu";

const describeGpu = describeWithCuda("out-of-memory");
const dir = path.join(fixtureRoot, "llama-tiny");
const outOfMemory =
  /CUDA out of memory on cuda:0: asked for \d+ MiB, \d+ MiB free of \d+ MiB\. Dispose tensors and models you no longer need, or use a smaller batch or context/;

// Fills cuda:0 with tensors, halving the request on each failure down to 1 MiB; returns them
// and the first error.
function fillCard(): { held: Tensor[]; first: Error } {
  const held: Tensor[] = [];
  let first: Error | undefined;
  for (let elements = 2 ** 30; elements >= 2 ** 19; ) {
    try {
      held.push(Tensor.empty([elements], "bf16", "cuda:0"));
    } catch (err) {
      first ??= err as Error;
      elements /= 2;
    }
  }
  return { held, first: first! };
}

async function greedy(model: Model, prompt: string, count: number): Promise<number[]> {
  const [result] = await model.generateBatch([prompt], { maxNewTokens: count, stopAtEos: false });
  return result.tokens;
}

describeGpu("out of GPU memory", () => {
  // The case with the widest greedy margins, so bf16 rounding on either side cannot flip a token.
  const prompt = readReference("llama-tiny").cases[1].prompt;
  let cpuTokens: number[];
  beforeAll(async () => {
    const cpu = await loadModel(dir, { device: "cpu", kvCacheBytes: 16 * 2 ** 20, computeDType: "bf16" });
    cpuTokens = await greedy(cpu, prompt, 16);
    await cpu.dispose();
  });

  test("a tensor larger than the card is an error with sizes, and the card is free again at once, to this process and others", () => {
    const free = () => (devices().find((d) => d.id === "cuda:0") as { freeMemory: number }).freeMemory;
    const card = devices().find((d) => d.id === "cuda:0")!;
    const before = free();
    expect(() => Tensor.empty([Math.ceil((card.totalMemory * 2) / 4)], "f32", "cuda:0")).toThrow(outOfMemory);
    // What the refused request mapped goes back to the driver: a pool that kept it would hold
    // nearly the whole card, and every other process on it would run out.
    expect(before - free()).toBeLessThan(2 ** 30);
    const values = Float32Array.from({ length: 1024 }, () => Math.random() + 0.5);
    const small = Tensor.from(values, [1024], { device: "cuda:0" });
    try {
      expect(Array.from(small.toFloat32Array())).toEqual(Array.from(values));
    } finally {
      small.dispose();
    }
  });

  test("a KV pool larger than the card is an error with a remedy, leaves nothing allocated, and a loaded model keeps working", async () => {
    await collectGarbage();
    const other = await loadModel(dir, { device: "cuda:0", kvCacheBytes: 16 * 2 ** 20 });
    try {
      const before = memoryUsage().cuda;
      const card = devices().find((d) => d.id === "cuda:0")!;
      // Twice the card: within the pool's page-count limit, so the allocation itself fails.
      const tooMuch = 2 * card.totalMemory;
      await expect(loadModel(dir, { device: "cuda:0", kvCacheBytes: tooMuch })).rejects.toThrow(
        /^loadModel: the KV pool \([\d.]+ GiB, kvCacheBytes\) does not fit in cuda:0's memory: CUDA out of memory on cuda:0: asked for \d+ MiB, \d+ MiB free of \d+ MiB; ask for a smaller kvCacheBytes$/,
      );
      expect(memoryUsage().cuda).toBe(before);
      expect(await greedy(other, prompt, 4)).toEqual(cpuTokens.slice(0, 4));
    } finally {
      await other.dispose();
    }
  });

  test("a full card fails allocations, model loads and batches with errors; freed, it loads and generates the CPU's tokens", async () => {
    await collectGarbage();
    const before = memoryUsage().cuda;
    const loaded = await loadModel(dir, { device: "cuda:0", kvCacheBytes: 64 * 2 ** 20 });
    const { held, first } = fillCard();
    try {
      expect(first.message).toMatch(outOfMemory);
      expect(held.length).toBeGreaterThan(0);
      const full = memoryUsage().cuda;
      await expect(loadModel(dir, { device: "cuda:0", kvCacheBytes: 16 * 2 ** 20 })).rejects.toThrow(/CUDA out of memory|cuBLAS|linear:/);
      expect(memoryUsage().cuda).toBe(full);
      // A batch whose activations do not fit: 64 prompts of a few hundred tokens.
      const long = Array.from({ length: 64 }, (_, i) => `${prompt} ${"and again ".repeat(40)} ${i}`);
      await expect(loaded.generateBatch(long, { maxNewTokens: 2, stopAtEos: false })).rejects.toThrow(/out of memory|PoolExhausted|pool/i);
    } finally {
      for (const t of held) t.dispose();
    }
    await loaded.dispose();
    expect(memoryUsage().cuda).toBe(before);

    const gpu = await loadModel(dir, { device: "cuda:0", kvCacheBytes: 16 * 2 ** 20 });
    try {
      expect(await greedy(gpu, prompt, 16)).toEqual(cpuTokens);
    } finally {
      await gpu.dispose();
    }
    expect(memoryUsage().cuda).toBe(before);
  });
});
