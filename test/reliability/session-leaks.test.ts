// Leak checks: resident memory (RSS) and the library's own accounting (memoryUsage(), KV pool
// pages) stay flat over 100 load/generate/dispose cycles and over 1,000 aborted generations.
// Each check runs in a child process, so jest's own memory does not blur the figures, and the
// figures are printed for the record. The child's young generation has a fixed size (1 MiB
// semi-spaces): V8 otherwise grows it with the allocation rate, by its own rules, and over the
// 1,000 generations that growth alone added ~3 KiB of RSS per generation (heapTotal rising
// ~6.5 KiB per generation with heapUsed flat); fixed, RSS rose 0.3 KiB per generation.
import * as path from "node:path";
import { runChild } from "../helpers/child";
import { fixtureRoot } from "../helpers/fixtures";

interface Figures {
  rssBeforeMiB: number;
  rssAfterMiB: number;
  /** Least-squares slope of RSS over the cycles, KiB per cycle. */
  slopeKiBPerCycle: number;
  heapBeforeMiB: number;
  heapAfterMiB: number;
  tensorBytesBefore: number;
  tensorBytesAfter: number;
  usedPagesAfter?: number;
  outcomes?: Record<string, number>;
}

/** Shared by both scripts: GC, RSS samples and their slope. */
const measure = `
  const v8 = require("node:v8"), vm = require("node:vm");
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc");
  const settle = async () => { for (let i = 0; i < 3; i++) { gc(); await new Promise((r) => setTimeout(r, 5)); } };
  const mib = (b) => Math.round((b / 2 ** 20) * 100) / 100;
  const slope = (ys) => {
    const n = ys.length, mx = (n - 1) / 2, my = ys.reduce((a, b) => a + b, 0) / n;
    let num = 0, den = 0;
    ys.forEach((y, x) => { num += (x - mx) * (y - my); den += (x - mx) ** 2; });
    return num / den;
  };
  async function run(cycles, every, cycle, extra) {
    for (let i = 0; i < Math.max(5, cycles / 10); i++) await cycle(i);   // warm-up: caches, JIT, allocator pools
    await settle();
    const start = { rss: process.memoryUsage().rss, heap: process.memoryUsage().heapUsed, tensors: lib.memoryUsage().cpu };
    const samples = [];
    for (let i = 0; i < cycles; i++) {
      await cycle(i);
      if ((i + 1) % every === 0) { await settle(); samples.push(process.memoryUsage().rss); }
    }
    await settle();
    const end = { rss: process.memoryUsage().rss, heap: process.memoryUsage().heapUsed, tensors: lib.memoryUsage().cpu };
    console.log("FIGURES " + JSON.stringify({
      rssBeforeMiB: mib(start.rss), rssAfterMiB: mib(end.rss),
      slopeKiBPerCycle: Math.round((slope(samples) / 1024 / every) * 10) / 10,
      heapBeforeMiB: mib(start.heap), heapAfterMiB: mib(end.heap),
      tensorBytesBefore: start.tensors, tensorBytesAfter: end.tensors, ...extra(),
    }));
  }
`;

function figures(script: string): Figures {
  const r = runChild(script, { heapMiB: 1024, timeoutMs: 300_000, nodeArgs: ["--max-semi-space-size=1"] });
  if (r.status !== 0) throw new Error(`the child process failed (status ${r.status}, signal ${r.signal}):\n${r.stderr.slice(-3000)}`);
  const line = r.stdout.split("\n").find((l) => l.startsWith("FIGURES "));
  if (!line) throw new Error(`no figures in the child's output:\n${r.stdout.slice(-2000)}`);
  return JSON.parse(line.slice("FIGURES ".length));
}

// A leaked model is ~2 MiB (weights 1 MiB as stored, 1 MiB of KV pool); a leaked cache a few pages.
// What is allowed is well below what one leaked model per cycle would add.
const allowedGrowthMiB = 24;
const allowedSlopeKiB = 160;

test("100 loadModel / generate / dispose cycles: RSS and the library's accounting are flat", () => {
  const dir = path.join(fixtureRoot, "llama-tiny");
  const f = figures(`
    const lib = require(process.env.LIGHTTRANSFER_ROOT + "/lib");
    ${measure}
    run(100, 10, async () => {
      const model = await lib.loadModel(${JSON.stringify(dir)}, { device: "cpu", kvCacheBytes: 2 ** 20 });
      const session = model.createSession({ hybrid: { mode: "auto", sink: 2, window: 4, lastQueries: 2 } });
      for await (const _ of session.generate("Once upon a time", { maxNewTokens: 8, stopAtEos: false }));
      for await (const _ of model.generate("The quick brown fox", { maxNewTokens: 4 }));
      await model.generateBatch(["a", "b c"], { maxNewTokens: 3 });
      await model.dispose();
    }, () => ({})).catch((e) => { console.error(e); process.exit(1); });
  `);
  console.log(`100 load/generate/dispose cycles: ${JSON.stringify(f)}`);
  expect(f.tensorBytesAfter).toBe(f.tensorBytesBefore);
  expect(f.rssAfterMiB - f.rssBeforeMiB).toBeLessThan(allowedGrowthMiB);
  expect(f.slopeKiBPerCycle).toBeLessThan(allowedSlopeKiB);
});

test("1,000 aborted generations (signal and dispose, at every step): RSS, tensors and pages are flat", () => {
  const dir = path.join(fixtureRoot, "qwen2-tiny");
  const f = figures(`
    const lib = require(process.env.LIGHTTRANSFER_ROOT + "/lib");
    ${measure}
    const outcomes = { aborted: 0, disposed: 0, finished: 0 };
    lib.loadModel(${JSON.stringify(dir)}, { device: "cpu", kvCacheBytes: 2 ** 20, pageSize: 4 }).then((model) => {
      const pages = model.pool.usedPages;
      return run(1000, 50, async (i) => {
        const controller = new AbortController();
        const session = model.createSession(i % 3 === 0 ? { hybrid: { mode: "auto", sink: 1, window: 4, lastQueries: 2 } } : {});
        const stopAt = i % 7;   // 0: aborted before the prompt is read
        if (stopAt === 0) controller.abort();
        let chunks = 0;
        try {
          for await (const _ of session.generate("Once upon a time there was", { maxNewTokens: 6, stopAtEos: false, signal: controller.signal })) {
            if (++chunks === stopAt) (i % 2 ? controller.abort() : session.dispose());
          }
          outcomes.finished++;
        } catch (err) {
          if (err.name !== "AbortError") throw err;
          outcomes[/disposed/.test(err.message) ? "disposed" : "aborted"]++;
        } finally {
          session.dispose();
        }
        if (model.pool.usedPages !== pages) throw new Error("pages leaked at generation " + i + ": " + model.pool.usedPages + " used, " + pages + " before");
      }, () => ({ usedPagesAfter: model.pool.usedPages - pages, outcomes }));
    }).catch((e) => { console.error(e); process.exit(1); });
  `);
  console.log(`1,000 aborted generations: ${JSON.stringify(f)}`);
  expect(f.usedPagesAfter).toBe(0);
  expect(f.tensorBytesAfter).toBe(f.tensorBytesBefore);
  expect(f.outcomes!.aborted).toBeGreaterThan(0);
  expect(f.outcomes!.disposed).toBeGreaterThan(0);
  expect(f.rssAfterMiB - f.rssBeforeMiB).toBeLessThan(allowedGrowthMiB);
  expect(f.slopeKiBPerCycle * 50).toBeLessThan(allowedSlopeKiB);
});
