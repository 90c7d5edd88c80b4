// The decoder's step and Sequence on the CPU: prefill followed by decode steps is the same
// computation as one prefill of the whole sequence (through full caches and Mistral's ring),
// every output of a step is the same step, hooks see what they are promised, and a sequence's
// dispose() gives every page back.
import * as path from "node:path";
import { loadModel, type Model, memoryUsage, type Tensor } from "../lib";
import type { Sequence, SequenceHooks } from "../lib/model/sequence";
import { fixtureModels, fixtureRoot } from "./helpers/fixtures";
import { Random } from "./helpers/reference";

const rng = new Random();

// Both paths compute in f32 and differ only in summation order (decode vs prefill attention,
// one row vs many in the GEMMs): the bound model.test.ts holds our logits to against transformers.
const logitTolerance = (scale: number) => 1e-4 * Math.max(1, scale);

function worstError(got: Float32Array, want: Float32Array): { worst: number; scale: number } {
  let worst = 0,
    scale = 0;
  for (let j = 0; j < want.length; j++) {
    scale = Math.max(scale, Math.abs(want[j]));
    worst = Math.max(worst, Math.abs(got[j] - want[j]));
  }
  return { worst, scale };
}

function argmaxRows(logits: Float32Array, vocab: number): number[] {
  return Array.from({ length: logits.length / vocab }, (_, b) => {
    const row = logits.subarray(b * vocab, (b + 1) * vocab);
    return row.reduce((best, v, j) => (v > row[best] ? j : best), 0);
  });
}

/**
 * The step's argmax `got` is the argmax of the whole prefill's `row`. Each path is within the
 * logit tolerance of the other, so where the row's top two are closer than twice it either may
 * win: there `got` need only be a logit that close to the row's largest.
 */
function expectArgmaxOf(row: Float32Array, got: number, where: string): void {
  const want = argmaxRows(row, row.length)[0];
  const margin = 2 * logitTolerance(row.reduce((scale, v) => Math.max(scale, Math.abs(v)), 0));
  const runnerUp = row.reduce((best, v, j) => (j !== want && v > best ? v : best), -Infinity);
  const label = `${where} (seed ${rng.seed})`;
  if (row[want] - runnerUp > margin) expect({ label, got }).toEqual({ label, got: want });
  else if (!(row[got] >= row[want] - margin))
    throw new Error(
      `${label}: the step chose ${got} (logit ${row[got]}) where ${want} (logit ${row[want]}) is more than ${margin} above it`,
    );
}

describe.each(fixtureModels)("%s: decode steps continue a prefill exactly", (name) => {
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(path.join(fixtureRoot, name), { device: "cpu", kvCacheBytes: 8 * 2 ** 20 });
  });
  afterAll(async () => model?.dispose());

  test("prefill of a prefix, then one step per token (batched with another sequence), equals the whole sequence's prefill", () => {
    const { vocabSize: vocab } = model.config;
    // Long enough to wrap Mistral's 16-token sliding-window ring during the steps.
    const lengths = [rng.int(24, 40), rng.int(24, 40)];
    const tokens = lengths.map((n) => Array.from({ length: n }, () => rng.int(0, vocab - 1)));
    const prefixes = lengths.map((n) => rng.int(1, n - 10));
    const whole = tokens.map((ids) => {
      const seq = model.decoder.createSequence();
      try {
        return model.decoder.prefill(seq, ids, { allLogits: true });
      } finally {
        seq.dispose();
      }
    });
    const seqs = tokens.map(() => model.decoder.createSequence());
    try {
      const first = seqs.map((seq, b) => model.decoder.prefill(seq, tokens[b].slice(0, prefixes[b]), { chunkSize: rng.int(1, 8) }));
      const compare = (b: number, position: number, got: Float32Array) => {
        const { worst, scale } = worstError(got, whole[b].subarray(position * vocab, (position + 1) * vocab));
        if (!(worst <= logitTolerance(scale)))
          throw new Error(`sequence ${b}, position ${position}: max |logit error| ${worst} over scale ${scale} (seed ${rng.seed})`);
      };
      first.forEach((logits, b) => compare(b, prefixes[b] - 1, logits));
      const outputs = ["logits", "argmax", "use", "none"] as const;
      for (let step = 0; ; step++) {
        const live = [0, 1].filter((b) => seqs[b].length < lengths[b]);
        if (live.length === 0) break;
        const batch = live.map((b) => seqs[b]);
        const ids = live.map((b) => tokens[b][seqs[b].length]);
        const output = outputs[step % outputs.length];
        const positions = live.map((b) => seqs[b].length);
        if (output === "logits") {
          const logits = model.decoder.step(batch, ids, "logits");
          live.forEach((b, i) => compare(b, positions[i], logits.subarray(i * vocab, (i + 1) * vocab)));
        } else if (output === "use") {
          const rows = model.decoder.step(batch, ids, (logits) => {
            expect(logits.shape).toEqual([live.length, vocab]);
            return logits.toFloat32Array();
          });
          live.forEach((b, i) => compare(b, positions[i], rows.subarray(i * vocab, (i + 1) * vocab)));
        } else if (output === "argmax") {
          const got = Array.from(model.decoder.step(batch, ids, "argmax"));
          live.forEach((b, i) =>
            expectArgmaxOf(
              whole[b].subarray(positions[i] * vocab, (positions[i] + 1) * vocab),
              got[i],
              `sequence ${b}, position ${positions[i]}`,
            ),
          );
        } else {
          expect(model.decoder.step(batch, ids, "none")).toBeUndefined();
        }
        live.forEach((b, i) => expect(seqs[b].length).toBe(positions[i] + 1));
      }
    } finally {
      for (const s of seqs) s.dispose();
    }
  });
});

describe("Sequence and the step's contract", () => {
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(path.join(fixtureRoot, "llama-tiny"), { device: "cpu", kvCacheBytes: 8 * 2 ** 20 });
  });
  afterAll(async () => model?.dispose());
  const randomIds = (n: number) => Array.from({ length: n }, () => rng.int(0, model.config.vocabSize - 1));

  test("dispose() gives every page back, cut layers included, a second dispose() changes nothing, and no step leaves tensors behind", () => {
    const used = model.pool.usedPages,
      bytes = memoryUsage().cpu;
    let disposed = 0;
    const seq = model.decoder.createSequence({
      ringAtStart: (l) => (l === 0 ? { sink: 1, window: 5 } : undefined),
      dispose: () => disposed++,
    });
    expect(seq.caches[0].kind).toBe("streaming");
    model.decoder.prefill(seq, randomIds(rng.int(20, 60)), { chunkSize: rng.int(3, 16) });
    model.decoder.step([seq], randomIds(1), "argmax");
    seq.cutToStreaming(1, 2, 6);
    expect(seq.caches[1].kind).toBe("streaming");
    model.decoder.step([seq], randomIds(1), (logits) => logits.shape);
    expect(model.pool.usedPages).toBeGreaterThan(used);
    seq.dispose();
    expect(model.pool.usedPages).toBe(used);
    expect(memoryUsage().cpu).toBe(bytes);
    expect(disposed).toBe(1);
    seq.dispose();
    expect(model.pool.usedPages).toBe(used);
    expect(disposed).toBe(1);
    expect(() => model.decoder.step([seq], [1], "logits")).toThrow(/this sequence was disposed/);
    expect(() => model.decoder.prefill(seq, [1])).toThrow(/this sequence was disposed/);
  });

  test("a sequence twice in one step, or an unknown output, is an error that changes nothing", () => {
    const seq = model.decoder.createSequence();
    try {
      model.decoder.prefill(seq, randomIds(5));
      const pages = seq.caches.map((c) => c.pageTable.length);
      expect(() => model.decoder.step([seq, seq], [1, 2], "logits")).toThrow(/appears more than once/);
      expect(() => model.decoder.step([seq], [1], "probabilities" as never)).toThrow(
        /output must be one of logits, argmax, none or a function of the logits, got "probabilities"/,
      );
      expect(seq.length).toBe(5);
      expect(seq.caches.map((c) => c.length)).toEqual(seq.caches.map(() => 5));
      expect(seq.caches.map((c) => c.pageTable.length)).toEqual(pages);
    } finally {
      seq.dispose();
    }
  });

  test("stats say every CPU step ran op by op, and why", () => {
    const seq = model.decoder.createSequence();
    try {
      model.decoder.prefill(seq, randomIds(4));
      const before = model.decoder.stats;
      const steps = rng.int(1, 4);
      for (let i = 0; i < steps; i++) model.decoder.step([seq], randomIds(1), "none");
      const after = model.decoder.stats;
      expect((after.eagerSteps.cpu ?? 0) - (before.eagerSteps.cpu ?? 0)).toBe(steps);
      expect(after.graphSteps).toBe(0);
    } finally {
      seq.dispose();
    }
  });

  test("hooks: a decode step's observed queries are the whole prefill's, afterStep runs once per step", () => {
    const { layers } = model.config;
    const ids = randomIds(rng.int(8, 20));
    const split = rng.int(1, ids.length - 1);
    const observing = () => {
      const seen = new Map<string, Float32Array>();
      let afterSteps = 0;
      const hooks: SequenceHooks = {
        observesQueries: () => true,
        observeQueries: (_seq: Sequence, layer: number, q: Tensor, start: number) => {
          const rows = q.toFloat32Array(),
            width = rows.length / q.shape[0];
          for (let t = 0; t < q.shape[0]; t++) seen.set(`${layer}@${start + t}`, rows.slice(t * width, (t + 1) * width));
        },
        afterStep: () => afterSteps++,
      };
      return { hooks, seen, afterSteps: () => afterSteps };
    };
    const whole = observing(),
      stepped = observing();
    const a = model.decoder.createSequence(whole.hooks),
      b = model.decoder.createSequence(stepped.hooks);
    try {
      model.decoder.prefill(a, ids);
      model.decoder.prefill(b, ids.slice(0, split));
      for (const id of ids.slice(split)) model.decoder.step([b], [id], "none");
      expect(stepped.afterSteps()).toBe(ids.length - split);
      expect(whole.afterSteps()).toBe(0);
      expect([...stepped.seen.keys()].sort()).toEqual([...whole.seen.keys()].sort());
      expect(whole.seen.size).toBe(layers * ids.length);
      for (const [key, want] of whole.seen) {
        const { worst, scale } = worstError(stepped.seen.get(key)!, want);
        if (!(worst <= logitTolerance(scale))) throw new Error(`query ${key}: max error ${worst} over scale ${scale} (seed ${rng.seed})`);
      }
    } finally {
      a.dispose();
      b.dispose();
    }
  });
});
