// LightTransfer end to end on the CPU: the hybrid model against an independent float64 reference
// of the same semantics (auto and fixed modes), the heap against a global sort, memory bounds,
// deferred selection for short prompts, batches mixing lazy sets, and option checking.
import { loadModel, type Model, memoryUsage } from "../lib";
import { FullCache } from "../lib/cache/layer-cache";
import { GenerationSequence } from "../lib/generate/sequence";
import { type ResolvedHybrid, randomLayers, resolveHybrid } from "../lib/hybrid/options";
import { prefillPeakPages } from "../lib/hybrid/planner";
import { HybridPolicy } from "../lib/hybrid/policy";
import { LazyLayerSelector, topLazyLayers } from "../lib/hybrid/selection";
import type { Sequence } from "../lib/model/sequence";
import { readReference } from "./helpers/fixtures";
import { runHybrid } from "./helpers/hybrid-run";
import { Random } from "./helpers/reference";
import { fixtureDir, loadReferenceWeights, type ReferenceWeights, referenceForward, referenceRatio } from "./helpers/reference-model";

const rng = new Random();

describe("lazy-layer selection", () => {
  test("the bounded heap picks exactly the global top L − P, ties by layer index, in any arrival order", () => {
    for (let trial = 0; trial < 300; trial++) {
      const L = rng.int(1, 40),
        P = rng.int(0, L);
      // Coarse values so ties happen often.
      const ratios = Array.from({ length: L }, () => Math.round(rng.next() * 8) / 8);
      const order = rng.shuffle(Array.from({ length: L }, (_, i) => i));
      const selector = new LazyLayerSelector(P);
      const lazy: number[] = [];
      for (const layer of order) {
        const popped = selector.push(layer, ratios[layer]);
        if (popped !== undefined) lazy.push(popped);
        expect(selector.retained.length).toBeLessThanOrEqual(P);
      }
      expect(lazy.sort((a, b) => a - b)).toEqual(topLazyLayers(ratios, P));
    }
  });
});

describe("random lazy layers", () => {
  test("distinct seeds give distinct draws, each a sorted set of distinct layers", () => {
    const draws = new Set<string>();
    for (let seed = 0; seed < 8; seed++) {
      const layers = randomLayers(32, 16, seed);
      expect(new Set(layers).size).toBe(16);
      expect(layers).toEqual([...layers].sort((a, b) => a - b));
      expect(layers.every((l) => Number.isInteger(l) && l >= 0 && l < 32)).toBe(true);
      draws.add(layers.join(","));
    }
    expect(draws.size).toBe(8);
    expect(randomLayers(32, 16, 5)).toEqual(randomLayers(32, 16, 5));
  });
});

describe("hybrid options are checked", () => {
  test.each([
    [{ mode: "lazy" }, /hybrid.mode must be one of auto, fixed/],
    [{ mode: "auto", window: 0 }, /hybrid.window must be an integer in \[1, \d+\], got 0/],
    [{ mode: "auto", sink: -1 }, /hybrid.sink must be an integer in \[0, \d+\], got -1/],
    [{ mode: "auto", lastQueries: 0 }, /hybrid.lastQueries must be an integer in \[1, \d+\], got 0/],
    [{ mode: "auto", fullLayers: 1.5 }, /hybrid.fullLayers must be a fraction in \[0, 1\), a percentage, or a count in \[1, 3\]/],
    [{ mode: "auto", fullLayers: 4 }, /count in \[1, 3\]/],
    [{ mode: "auto", fullLayers: "150%" }, /not a percentage between 0% and 100%/],
    [{ mode: "fixed" }, /needs hybrid.lazyLayers/],
    [{ mode: "fixed", lazyLayers: [3] }, /hybrid.lazyLayers has 3; layers are 0..2/],
    [{ mode: "auto", lazyLayers: [1] }, /only for mode 'fixed'/],
    [{ mode: "fixed", lazyLayers: [1], prefill: "lazy" }, /hybrid.prefill must be "full" or "streaming"/],
    [{ mode: "auto", seed: 3 }, /hybrid.seed is only for mode 'random'/],
    [
      { mode: "auto", prefill: "streaming" },
      /hybrid.prefill "streaming" is for modes .*; mode 'auto' prefills every layer with full attention/,
    ],
    [{ mode: "calibrate", prefill: "streaming" }, /mode 'calibrate' prefills every layer/],
    [{ prefill: "streaming" }, /mode 'off' prefills every layer/],
    [{ mode: "auto", full_layers: 0 }, /hybrid has no option "full_layers"; its options are mode, fullLayers, lazyLayers/],
    [{ lazy_layers: [0], Mode: "fixed" }, /hybrid has no option "lazy_layers", "Mode"/],
  ])("%j", (options, message) => {
    expect(() => resolveHybrid(options as never, 3)).toThrow(message);
  });
  test("fractions, percentages and counts", () => {
    expect(resolveHybrid({ mode: "auto" }, 32).fullLayers).toBe(16);
    expect(resolveHybrid({ mode: "auto", fullLayers: 0.75 }, 32).fullLayers).toBe(24);
    expect(resolveHybrid({ mode: "auto", fullLayers: "25%" }, 32).fullLayers).toBe(8);
    expect(resolveHybrid({ mode: "auto", fullLayers: 5 }, 32).fullLayers).toBe(5);
    expect(resolveHybrid({ mode: "random", fullLayers: 0.5, seed: 7 }, 32).lazyLayers).toHaveLength(16);
  });
});

describe("hybrid model against the float64 reference (llama-tiny)", () => {
  const name = "llama-tiny";
  let model: Model;
  let ref: ReferenceWeights;
  beforeAll(async () => {
    model = await loadModel(fixtureDir(name), { device: "cpu", kvCacheBytes: 16 * 2 ** 20, pageSize: 4 });
    ref = loadReferenceWeights(fixtureDir(name));
  });
  afterAll(async () => model?.dispose());

  const spec = { sink: 2, window: 6, lastQueries: 4 };
  const prompt = () => readReference(name).cases[1].ids; // 53 tokens: longer than sink + window + lastQueries
  const continuation = () => readReference(name).cases[1].greedy.slice(0, 12);

  const ours = (hybrid: object, ids: number[], cont: number[]) => runHybrid(model, hybrid, ids, cont);
  // The prefill-run tests: auto with one layer kept full, over a random prompt of [min, max] tokens.
  const autoOneFull = () =>
    resolveHybrid({ mode: "auto", fullLayers: 1, sink: 2, window: 10, lastQueries: 4 } as never, model.config.layers);
  const randomPrompt = (min: number, max: number) =>
    Array.from({ length: rng.int(min, max) }, () => rng.int(2, model.config.vocabSize - 1));

  function expectClose(got: Float32Array[], want: Float64Array, firstRow: number, vocab: number) {
    got.forEach((row, i) => {
      const w = want.subarray((firstRow + i) * vocab, (firstRow + i + 1) * vocab);
      let scale = 0,
        err = 0;
      for (let j = 0; j < vocab; j++) {
        scale = Math.max(scale, Math.abs(w[j]));
        err = Math.max(err, Math.abs(row[j] - w[j]));
      }
      // f32 against float64 over a few layers: far below 1e-4 of the logits' scale.
      if (!(err <= 1e-4 * Math.max(1, scale))) throw new Error(`step ${i}: max |logit error| ${err} at scale ${scale}`);
    });
  }

  test("auto: the laziest layers (by the reference's own ratios) are cut, and decode matches", () => {
    const ids = prompt(),
      cont = continuation(),
      N = ids.length,
      vocab = model.config.vocabSize;
    const full = referenceForward(ref, [...ids, ...cont], () => true);
    const ratios = full.probs.map((p) => referenceRatio(p, N + cont.length, model.config.heads, N, spec));
    const lazy = topLazyLayers(ratios, 1);
    const { rows, state } = ours({ mode: "auto", fullLayers: 1, ...spec }, ids, cont);
    expect(state.lazyLayers).toEqual(lazy);
    state.ratios.forEach((r, l) => expect(r).toBeCloseTo(ratios[l], 5));
    // Lazy layers: full attention during prefill, sinks + window once decoding.
    const want = referenceForward(ref, [...ids, ...cont], (l, q, k) => !lazy.includes(l) || q < N || k < spec.sink || q - k < spec.window);
    expectClose(rows.slice(1), want.logits, N, vocab);
    expectClose(rows.slice(0, 1), want.logits, N - 1, vocab);
  });

  test.each(["full", "streaming"] as const)("fixed lazy layers with %s prefill", (prefill) => {
    const ids = prompt(),
      cont = continuation(),
      N = ids.length,
      vocab = model.config.vocabSize;
    const lazy = [0, 2];
    const { rows, state } = ours({ mode: "fixed", lazyLayers: lazy, prefill, ...spec }, ids, cont);
    expect(state.lazyLayers).toEqual(lazy);
    const want = referenceForward(
      ref,
      [...ids, ...cont],
      (l, q, k) => !lazy.includes(l) || (prefill === "full" && q < N) || k < spec.sink || q - k < spec.window,
    );
    expectClose(rows, want.logits, N - 1, vocab);
  });

  test.each(["full", "streaming"] as const)("with window >= N, hybrid equals full (every layer lazy, %s prefill)", (prefill) => {
    const ids = prompt(),
      cont = continuation();
    const off = ours({ mode: "off" }, ids, cont);
    // Auto mode would wait (N <= sink + window: nothing to cut), so every layer is made lazy.
    const hybrid = ours({ mode: "streaming-all", prefill, sink: 2, window: 200 }, ids, cont);
    expect(hybrid.state.lazyLayers).toEqual([0, 1, 2]);
    hybrid.rows.forEach((row, i) => {
      let worst = 0;
      for (let j = 0; j < row.length; j++) worst = Math.max(worst, Math.abs(row[j] - off.rows[i][j]));
      expect(worst).toBeLessThan(1e-5);
    });
  });

  test("peak KV during prefill is at most P + 1 full caches plus rings (pool high-water mark)", () => {
    const ids = Array.from({ length: 160 }, () => rng.int(2, model.config.vocabSize - 1));
    const pages = (n: number) => Math.ceil(n / model.pool.pageSize);
    const peak = (hybrid: object) => {
      const sequence = new GenerationSequence(model.decoder, resolveHybrid(hybrid as never, model.config.layers));
      model.pool.resetHighWater();
      const base = model.pool.usedPages;
      sequence.prefill(ids, 32);
      const result = { peak: model.pool.highWaterPages - base, after: model.pool.usedPages - base, lazy: sequence.hybridState?.lazyLayers };
      sequence.dispose();
      return result;
    };
    const L = model.config.layers,
      P = 1,
      S = 2,
      W = 10;
    const hybrid = peak({ mode: "auto", fullLayers: P, sink: S, window: W, lastQueries: 4 });
    expect(hybrid.lazy).toHaveLength(L - P);
    expect(hybrid.peak).toBeLessThanOrEqual((P + 1) * pages(ids.length) + (L - P - 1) * pages(S + W));
    expect(hybrid.after).toBe(P * pages(ids.length) + (L - P) * pages(S + W));
    const full = peak({ mode: "off" });
    expect(full.peak).toBe(L * pages(ids.length));
  });

  test("a prefill run a little at a time (as the server runs it) cuts layer by layer within P + 1 full caches and gives one prefill's result, bit for bit", () => {
    const hybrid = autoOneFull();
    const ids = randomPrompt(60, 200);
    const chunk = rng.int(8, 40);
    const pages = (n: number) => Math.ceil(n / model.pool.pageSize);
    const L = model.config.layers;
    const summary = (sequence: GenerationSequence) => ({
      state: sequence.hybridState,
      pages: sequence.seq.caches.map((c) => c.pageTable.length),
      length: sequence.length,
    });
    const one = new GenerationSequence(model.decoder, hybrid);
    let whole: { logits: Float32Array; summary: ReturnType<typeof summary> };
    try {
      whole = { logits: one.prefill(ids, chunk), summary: summary(one) };
    } finally {
      one.dispose();
    }
    const sequence = new GenerationSequence(model.decoder, hybrid);
    try {
      const base = model.pool.usedPages;
      model.pool.resetHighWater();
      sequence.startPrefill(ids, chunk);
      const calls: number[] = [];
      let logits: Float32Array | undefined;
      while (!logits) {
        const work = rng.int(1, 2 * ids.length);
        const done = sequence.continuePrefill(work);
        calls.push(done.work);
        logits = done.logits;
        // Between calls the sequence is the run's: no step, no other prefill.
        if (!logits) expect(() => model.decoder.step([sequence.seq], [3], "logits")).toThrow(/a prefill of this sequence is under way/);
      }
      expect({ seed: rng.seed, calls: calls.length > 1, work: calls.reduce((a, b) => a + b, 0) }).toEqual({
        seed: rng.seed,
        calls: true,
        work: ids.length * L,
      });
      expect(model.pool.highWaterPages - base).toBeLessThanOrEqual(2 * pages(ids.length) + (L - 2) * pages(2 + 10));
      expect({ seed: rng.seed, ...summary(sequence) }).toEqual({ seed: rng.seed, ...whole.summary });
      expect(Buffer.from(logits.buffer).equals(Buffer.from(whole.logits.buffer))).toBe(true);
    } finally {
      sequence.dispose();
    }
  });

  test("a prefill run cancelled part-way, or its sequence disposed, gives every page back; the sequence then prefills as new", () => {
    const hybrid = autoOneFull();
    const ids = randomPrompt(40, 120);
    const base = model.pool.usedPages;
    const sequence = new GenerationSequence(model.decoder, hybrid);
    try {
      sequence.startPrefill(ids, 16);
      // Short of the last layer (a call overshoots its work by less than a chunk through a layer).
      expect(sequence.continuePrefill(rng.int(1, ids.length * (model.config.layers - 1))).logits).toBeUndefined();
      expect(model.pool.usedPages).toBeGreaterThan(base);
      sequence.cancelPrefill();
      expect({ seed: rng.seed, pages: model.pool.usedPages, length: sequence.length, prefilling: sequence.prefilling }).toEqual({
        seed: rng.seed,
        pages: base,
        length: 0,
        prefilling: false,
      });
      const again = sequence.prefill(ids, 16);
      const fresh = new GenerationSequence(model.decoder, hybrid);
      try {
        expect(Buffer.from(again.buffer).equals(Buffer.from(fresh.prefill(ids, 16).buffer))).toBe(true);
        expect(sequence.hybridState).toEqual(fresh.hybridState);
      } finally {
        fresh.dispose();
      }
      sequence.startPrefill(ids.slice(0, 5), 16);
      sequence.continuePrefill(1);
    } finally {
      sequence.dispose();
    }
    expect(model.pool.usedPages).toBe(base);
  });

  // A failure while putting the sequence back (here the policy's part, after the caches) leaves
  // it half restored: it then refuses every use, saying so, until restart(), and gives every page
  // back either way.
  test("a cancel that fails part-way leaves a sequence that refuses use until restart(), then prefills as new", () => {
    const hybrid = autoOneFull();
    const ids = randomPrompt(40, 120);
    const base = model.pool.usedPages;
    const sequence = new GenerationSequence(model.decoder, hybrid);
    const failure = new Error("policy restore failed (planted)");
    const realSavePoint = HybridPolicy.prototype.savePoint;
    const savePoint = jest.spyOn(HybridPolicy.prototype, "savePoint").mockImplementationOnce(function (this: HybridPolicy) {
      const real = realSavePoint.call(this);
      return {
        restore: () => {
          throw failure;
        },
        dispose: () => real.dispose(),
      };
    });
    try {
      sequence.startPrefill(ids, 16);
      expect(sequence.continuePrefill(rng.int(1, ids.length * (model.config.layers - 1))).logits).toBeUndefined();
      expect(() => sequence.cancelPrefill()).toThrow(failure);
      expect(sequence.prefilling).toBe(false);
      const refusal =
        /context could not be put back as it was before its prompt was cancelled \(policy restore failed \(planted\)\); dispose the session/;
      expect(() => sequence.prefill(ids, 16)).toThrow(refusal);
      expect(() => sequence.seq).toThrow(refusal);
      sequence.restart();
      const again = sequence.prefill(ids, 16);
      const fresh = new GenerationSequence(model.decoder, hybrid);
      try {
        expect(Buffer.from(again.buffer).equals(Buffer.from(fresh.prefill(ids, 16).buffer))).toBe(true);
      } finally {
        fresh.dispose();
      }
    } finally {
      savePoint.mockRestore();
      sequence.dispose();
    }
    expect(model.pool.usedPages).toBe(base);
  });

  test("a run cancelled after layers were measured and cut puts the policy back too: the prompt then prefills as on a fresh sequence", () => {
    const options = autoOneFull();
    const ids = randomPrompt(40, 120);
    const L = model.config.layers;
    const snapshot = (policy: HybridPolicy, seq: Sequence) => ({
      state: structuredClone(policy.state),
      caches: seq.caches.map((c) => c.kind),
      pages: seq.caches.map((c) => c.pageTable.length),
    });
    const freshPolicy = new HybridPolicy(model.decoder, options);
    const fresh = model.decoder.createSequence(freshPolicy);
    const policy = new HybridPolicy(model.decoder, options);
    const seq = model.decoder.createSequence(policy);
    try {
      const empty = snapshot(policy, seq);
      const run = model.decoder.startPrefill(seq, ids, { chunkSize: 16 });
      // Two layers measured: with one layer kept full, one of them is cut already.
      run.advance(2 * ids.length);
      expect(policy.state.lazyLayers).toHaveLength(1);
      run.cancel();
      expect({ seed: rng.seed, ...snapshot(policy, seq) }).toEqual({ seed: rng.seed, ...empty });
      const again = model.decoder.prefill(seq, ids, { chunkSize: 16 });
      const want = model.decoder.prefill(fresh, ids, { chunkSize: 16 });
      expect({ seed: rng.seed, ...snapshot(policy, seq) }).toEqual({ seed: rng.seed, ...snapshot(freshPolicy, fresh) });
      expect(policy.state.lazyLayers).toHaveLength(L - 1);
      expect(Buffer.from(again.buffer).equals(Buffer.from(want.buffer))).toBe(true);
    } finally {
      seq.dispose();
      fresh.dispose();
    }
  });

  // lastQueries 4: fewer than the prompt; 16: more than the prompt, fewer than the 17 tokens at
  // the choice (its rows grow, then wrap); 30: more than either.
  test.each([4, 16, 30])(
    "short prompts: selection waits until the sequence grows past sink + window, from the last %i kept queries",
    (lastQueries) => {
      const ids = readReference(name).cases[0].ids; // 12 tokens
      const hybrid = { mode: "auto", fullLayers: 1, sink: 2, window: 14, lastQueries };
      const cont = readReference(name).cases[0].greedy.slice(0, 10);
      const sequence = new GenerationSequence(model.decoder, resolveHybrid(hybrid as never, model.config.layers));
      try {
        sequence.prefill(ids);
        // hybridState is a snapshot: read it again after every step.
        expect(sequence.hybridState.pending).toBe(true);
        const all = [...ids];
        for (const t of cont) {
          model.decoder.step([sequence.seq], [t], "logits");
          all.push(t);
          if (sequence.length <= 16) expect(sequence.hybridState.pending).toBe(true);
        }
        const state = sequence.hybridState;
        expect(state.pending).toBe(false);
        // At the step the sequence reached 17 tokens, the ratios were those of its last 4 queries.
        const full = referenceForward(ref, all, () => true);
        const ratios = full.probs.map((p) => referenceRatio(p, all.length, model.config.heads, 17, { sink: 2, window: 14, lastQueries }));
        state.ratios.forEach((r, l) => expect(r).toBeCloseTo(ratios[l], 5));
        expect(state.lazyLayers).toEqual(topLazyLayers(ratios, 1));
        for (const l of state.lazyLayers) expect(sequence.seq.caches[l].kind).toBe("streaming");
      } finally {
        sequence.dispose();
      }
    },
  );

  test("a later prompt that takes a pending sequence past sink + window chooses from its last queries", () => {
    // A session whose short first turn left the choice waiting, and whose turns are one token
    // each, has no decode step to make it: the prompt that crosses sink + window does.
    const c = readReference(name).cases[1];
    const lastQueries = rng.int(2, 8);
    const hybrid = { mode: "auto", fullLayers: 1, sink: 2, window: 14, lastQueries };
    const first = rng.int(4, 16);
    const all = c.ids.slice(0, rng.int(18, Math.min(c.ids.length, 40)));
    const sequence = new GenerationSequence(model.decoder, resolveHybrid(hybrid as never, model.config.layers));
    try {
      sequence.prefill(all.slice(0, first));
      expect(sequence.hybridState.pending).toBe(true);
      sequence.prefill(all.slice(first));
      const state = sequence.hybridState;
      expect(state.pending).toBe(false);
      const full = referenceForward(ref, all, () => true);
      const ratios = full.probs.map((p) =>
        referenceRatio(p, all.length, model.config.heads, all.length, { sink: 2, window: 14, lastQueries }),
      );
      state.ratios.forEach((r, l) => expect(r).toBeCloseTo(ratios[l], 5));
      expect(state.lazyLayers).toEqual(topLazyLayers(ratios, 1));
      for (const l of state.lazyLayers) expect(sequence.seq.caches[l].kind).toBe("streaming");
    } finally {
      sequence.dispose();
    }
  });

  /** A sequence with its policy, and a twin with its own to compare it with. */
  const twinSequences = (options: ResolvedHybrid) => {
    const policy = new HybridPolicy(model.decoder, options);
    const freshPolicy = new HybridPolicy(model.decoder, options);
    return { policy, seq: model.decoder.createSequence(policy), freshPolicy, fresh: model.decoder.createSequence(freshPolicy) };
  };

  /** The most pages `model`'s pool holds at once while `run` runs. */
  const peakPagesDuring = (run: () => void): number => {
    const pool = model.pool;
    const allocate = pool.allocate.bind(pool);
    let peak = pool.usedPages;
    const spy = jest.spyOn(pool, "allocate").mockImplementation((n: number) => {
      const pages = allocate(n);
      peak = Math.max(peak, pool.usedPages);
      return pages;
    });
    try {
      run();
    } finally {
      spy.mockRestore();
    }
    return peak;
  };

  test("a later prompt that takes a waiting sequence past sink + window measures and cuts layer by layer, as one prompt of both would", () => {
    const options = resolveHybrid({ mode: "auto", fullLayers: 1, sink: 2, window: 10, lastQueries: 4 }, model.config.layers);
    const first = randomPrompt(3, 12);
    const second = randomPrompt(40, 80);
    const turns = new GenerationSequence(model.decoder, options);
    const whole = new GenerationSequence(model.decoder, options);
    try {
      turns.prefill(first);
      expect(turns.hybridState.pending).toBe(true);
      const base = model.pool.usedPages;
      let logits: Float32Array | undefined;
      const peak = peakPagesDuring(() => {
        logits = turns.prefill(second);
      });
      // At most P + 1 = 2 layers full at once, the third a ring: as the planner counts a first
      // prompt of both (before, all three layers stayed full until the prompt ended).
      const layout = { ...options, fullLayers: 1, pageSize: model.pool.pageSize };
      const planned = prefillPeakPages(model.config, first.length + second.length, layout);
      const held = (pages: number) => pages - base + model.config.layers * Math.ceil(first.length / model.pool.pageSize);
      expect(held(peak)).toBeLessThanOrEqual(planned);
      expect(held(peak)).toBeLessThan(model.config.layers * Math.ceil((first.length + second.length) / model.pool.pageSize));
      const wholeLogits = whole.prefill([...first, ...second]);
      const a = turns.hybridState,
        b = whole.hybridState;
      expect(a.pending).toBe(false);
      expect(a.lazyLayers).toEqual(b.lazyLayers);
      a.ratios.forEach((r, l) => expect(r).toBeCloseTo(b.ratios[l]!, 5));
      for (let i = 0; i < wholeLogits.length; i++) expect(Math.abs(logits![i] - wholeLogits[i])).toBeLessThan(1e-4);
      for (const l of a.lazyLayers) expect(turns.seq.caches[l].kind).toBe("streaming");
    } finally {
      turns.dispose();
      whole.dispose();
    }
  });

  test.each(["after the last layer, once an earlier one was cut", "in the cut itself"])(
    "a prompt that crossed sink + window and failed %s leaves the sequence as it was before it",
    (where) => {
      const options = resolveHybrid({ mode: "auto", fullLayers: 1, sink: 2, window: 10, lastQueries: 4 }, model.config.layers);
      const first = randomPrompt(3, 12);
      const second = randomPrompt(40, 80);
      const cont = randomPrompt(6, 6);
      const { policy, seq, freshPolicy, fresh } = twinSequences(options);
      const pages = model.pool.usedPages;
      try {
        for (const s of [seq, fresh]) model.decoder.prefill(s, first);
        const before = model.pool.usedPages;
        let spy: jest.SpyInstance;
        let failedWhere = false;
        if (where === "in the cut itself") {
          // The cache is still full, holding the earlier turn and the prompt, when the cut throws.
          spy = jest.spyOn(FullCache.prototype, "cutToStreaming").mockImplementation(function (this: FullCache) {
            failedWhere = this.length > first.length;
            throw new Error("the cut failed (injected)");
          });
        } else {
          const last = model.config.layers - 1;
          const layerDone = policy.layerDone.bind(policy);
          spy = jest.spyOn(policy, "layerDone").mockImplementation((s, layer, ratio) => {
            layerDone(s, layer, ratio);
            if (layer === last) {
              failedWhere = s.caches.some((c) => c.kind === "streaming");
              throw new Error("the cut failed (injected)");
            }
          });
        }
        expect(() => model.decoder.prefill(seq, second)).toThrow("the cut failed (injected)");
        spy.mockRestore();
        expect(failedWhere).toBe(true);
        expect(seq.damaged).toBeUndefined();
        expect(model.pool.usedPages).toBe(before);
        expect(policy.state).toEqual(freshPolicy.state);
        expect(seq.caches.map((c) => [c.kind, c.length])).toEqual(fresh.caches.map((c) => [c.kind, c.length]));
        // The tokens of the first prompt are back in every layer: the same prompt and steps give the same logits, bit for bit.
        for (const s of [seq, fresh]) model.decoder.prefill(s, second);
        expect(policy.state).toEqual(freshPolicy.state);
        for (const t of cont) {
          const got = model.decoder.step([seq], [t], "logits");
          const want = model.decoder.step([fresh], [t], "logits");
          expect(Buffer.from(got.buffer).equals(Buffer.from(want.buffer))).toBe(true);
        }
      } finally {
        seq.dispose();
        fresh.dispose();
      }
      expect(model.pool.usedPages).toBe(pages);
    },
  );

  test("a pending choice's kept queries come back as they were when a prefill that grew them is cancelled", () => {
    const options = resolveHybrid({ mode: "auto", fullLayers: 1, sink: 2, window: 14, lastQueries: 16 }, model.config.layers);
    const first = randomPrompt(3, 6);
    const second = randomPrompt(6, 9);
    const cont = randomPrompt(17, 17);
    const { policy, seq, freshPolicy, fresh } = twinSequences(options);
    try {
      for (const s of [seq, fresh]) model.decoder.prefill(s, first);
      // The second prompt's first chunk through every layer grows each layer's kept rows; then it is cancelled.
      const run = model.decoder.startPrefill(seq, second, { chunkSize: 3 });
      run.advance(3 * model.config.layers);
      run.cancel();
      for (const s of [seq, fresh]) model.decoder.prefill(s, second);
      // Steps until the sequences pass sink + window and the choice is made from the last 16 queries.
      for (let i = 0; freshPolicy.state.pending; i++) {
        const got = model.decoder.step([seq], [cont[i]], "logits");
        const want = model.decoder.step([fresh], [cont[i]], "logits");
        expect(Buffer.from(got.buffer).equals(Buffer.from(want.buffer))).toBe(true);
      }
      expect(policy.state.pending).toBe(false);
      expect({ seed: rng.seed, ratios: policy.state.ratios, lazy: policy.state.lazyLayers }).toEqual({
        seed: rng.seed,
        ratios: freshPolicy.state.ratios,
        lazy: freshPolicy.state.lazyLayers,
      });
    } finally {
      seq.dispose();
      fresh.dispose();
    }
  });

  test("a short prompt keeps as many queries as it has, however many lastQueries asks for", () => {
    const ids = readReference(name).cases[0].ids;
    const lastQueries = 65536;
    const { heads, headDim, layers } = model.config;
    const sequence = new GenerationSequence(model.decoder, resolveHybrid({ mode: "auto", fullLayers: 1, lastQueries }, layers));
    try {
      const before = memoryUsage().cpu;
      sequence.prefill(ids);
      expect(sequence.hybridState.pending).toBe(true);
      // Rows of every layer's kept queries, as lastQueries would have them: f32 on the CPU.
      const asked = lastQueries * heads * headDim * 4 * layers;
      expect(memoryUsage().cpu - before).toBeLessThan(asked / 100);
    } finally {
      sequence.dispose();
    }
  });

  test("a batch mixes sequences with different lazy sets and equals their single runs", async () => {
    const cases = readReference(name)
      .cases.slice(0, 3)
      .map((c) => c.prompt);
    const hybrid = { mode: "auto" as const, fullLayers: 1, sink: 2, window: 6, lastQueries: 4 };
    const used = model.pool.usedPages;
    const batch = await model.generateBatch(cases, { maxNewTokens: 10, stopAtEos: false, hybrid });
    for (const [i, prompt] of cases.entries()) {
      const tokens: number[] = [];
      const session = model.createSession({ hybrid });
      for await (const chunk of session.generate(prompt, { maxNewTokens: 10, stopAtEos: false })) tokens.push(...chunk.tokens);
      expect(batch[i].tokens).toEqual(tokens);
      expect(batch[i].hybrid?.lazyLayers).toEqual(session.stats.hybrid?.lazyLayers);
      session.dispose();
    }
    expect(model.pool.usedPages).toBe(used);
  });

  test("session stats report lazy layers, ratios and KV bytes against full", async () => {
    const session = model.createSession({ hybrid: { mode: "auto", fullLayers: 1, sink: 2, window: 6, lastQueries: 4 } });
    for await (const _ of session.generate(readReference(name).cases[1].prompt, { maxNewTokens: 4, stopAtEos: false }));
    const s = session.stats;
    expect(s.hybrid?.lazyLayers).toHaveLength(2);
    expect(s.hybrid?.ratios.every((r) => r !== undefined && r >= 0 && r <= 1)).toBe(true);
    expect(s.kvBytes).toBeLessThan(s.kvBytesFull);
    session.dispose();
    expect(() => model.createSession({ hybrid: { mode: "auto", window: -3 } })).toThrow(/hybrid.window/);
  });
});
