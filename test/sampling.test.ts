// Sampling: the candidates after temperature, topK and topP against a plain full-sort reference,
// and the sampler's contract (greedy, seeds, validation).
import * as path from "node:path";
import { kernels, loadModel, Tensor } from "../lib";
import { argmax, candidatesFromTop, type RowCandidates, Sampler, samplingCandidates, validateSampling } from "../lib/generate/sampling";
import { sampleOnDevice } from "../lib/generate/step";
import { fixtureRoot, prefilledSequences, readReference } from "./helpers/fixtures";
import { Random } from "./helpers/reference";

const rng = new Random();

/**
 * The definition: sort every token that is not NaN, keep topK, then the shortest prefix holding
 * topP. When neither cuts anything the tokens stay in id order (no sort is needed to sample).
 */
function referenceCandidates(scores: Float32Array, temperature: number, topK: number, topP: number) {
  const order = Array.from(scores.keys()).filter((i) => !Number.isNaN(scores[i]));
  if ((topK > 0 && topK < scores.length) || topP < 1) order.sort((a, b) => scores[b] - scores[a] || a - b);
  // transformers' top-k: every token whose score is not below the k-th largest (ties at the k-th all stay).
  const ids = topK > 0 && topK < order.length ? order.filter((i) => scores[i] >= scores[order[topK - 1]]) : order;
  const max = Math.max(...order.map((i) => scores[i]));
  const weights = ids.map((i) => Math.exp((scores[i] - max) / temperature));
  let total = weights.reduce((a, b) => a + b, 0);
  let count = ids.length;
  if (topP < 1) {
    let sum = 0;
    count = 0;
    while (count < ids.length && sum < topP * total) sum += weights[count++];
    total = sum;
  }
  return { ids: ids.slice(0, count), weights: weights.slice(0, count), total };
}

/** Logits of a few shapes: wide uniform, peaked, many exact ties, and with NaN / -Infinity planted. */
function logitsOf(kind: string, vocab: number): Float32Array {
  const x = new Float32Array(vocab);
  for (let i = 0; i < vocab; i++) {
    if (kind === "uniform") x[i] = (rng.next() * 2 - 1) * 8;
    else if (kind === "peaked") x[i] = rng.normal() * 2 + (rng.next() < 0.001 ? 12 : 0);
    else x[i] = Math.round(rng.normal() * 4) / 4; // "ties": few distinct values
  }
  if (kind === "ties" && vocab > 3) {
    x[rng.int(0, vocab - 1)] = NaN;
    x[rng.int(0, vocab - 1)] = -Infinity;
  }
  return x;
}

describe("samplingCandidates equals the full-sort definition", () => {
  const cases: Array<[string, number, number, number, number]> = [];
  for (const kind of ["uniform", "peaked", "ties"])
    for (const vocab of [1, 7, 1000, 50000])
      for (const [temperature, topK, topP] of [
        [0.7, 0, 0.9],
        [0.3, 40, 1],
        [1.5, 5, 0.5],
        [1, 0, 0.01],
        [0.7, 3, 0.95],
        [1, vocab + 3, 0.8],
      ] as const)
        cases.push([kind, vocab, temperature, topK, topP]);
  test.each(cases)("%s logits, vocab %i, temperature %f, topK %i, topP %f", (kind, vocab, temperature, topK, topP) => {
    const scores = logitsOf(kind, vocab);
    const got = samplingCandidates(scores, { temperature, topK, topP });
    const want = referenceCandidates(scores, temperature, topK, topP);
    expect(Array.from(got.ids)).toEqual(want.ids);
    got.weights.forEach((w, i) => expect(Math.abs(w - want.weights[i])).toBeLessThanOrEqual(1e-12 * Math.max(1, want.weights[i])));
    expect(Math.abs(got.total - want.total)).toBeLessThanOrEqual(1e-9 * want.total);
  });

  test("without topK and topP every token is a candidate, in id order", () => {
    const scores = logitsOf("peaked", 1000);
    const got = samplingCandidates(scores, { temperature: 0.8, topK: 0, topP: 1 });
    expect(Array.from(got.ids)).toEqual(Array.from(scores.keys()));
    const max = Math.max(...scores);
    got.weights.forEach((w, i) => expect(w).toBeCloseTo(Math.exp((scores[i] - max) / 0.8), 12));
  });
});

describe("samplingCandidates with +Infinity scores (a repetition penalty near 0 divides logits into overflow)", () => {
  // The softmax's limit: the +Infinity tokens share all the probability equally, in id order; they
  // all tie, so topK keeps every one of them.
  test.each([
    [0, 1, 5],
    [3, 1, 5],
    [0, 0.5, 3],
    [0, 0.01, 1],
    [2, 0.5, 3],
  ])("topK %i, topP %f: the first %i of the infinite tokens, equal weights", (topK, topP, count) => {
    const scores = logitsOf("uniform", 500);
    const [nan, ...shuffled] = rng.shuffle(Array.from(scores.keys()));
    const infinite = shuffled.slice(0, 5).sort((a, b) => a - b);
    for (const i of infinite) scores[i] = Infinity;
    scores[nan] = Number.NaN;
    const got = samplingCandidates(scores, { temperature: rng.next() + 0.1, topK, topP });
    expect(Array.from(got.ids)).toEqual(infinite.slice(0, count));
    expect(Array.from(got.weights)).toEqual(Array(got.ids.length).fill(1));
    expect(got.total).toBe(got.ids.length);
  });

  test("a repetition penalty of 5e-324 sends the seen tokens with positive logits to +Infinity: the sampler draws one of them", () => {
    const logits = logitsOf("peaked", 300);
    logits[17] = 1 + rng.next();
    logits[210] = 0.5;
    logits[99] = -1;
    for (let seed = 0; seed < 50; seed++) {
      const sampler = new Sampler({ temperature: 1, topP: 0.9, repetitionPenalty: 5e-324, seed });
      expect([17, 210]).toContain(sampler.next(logits, [99, 210, 17]));
    }
  });
});

describe("Sampler", () => {
  test("greedy picks the argmax (NaN first, then the lowest index of the maximum)", () => {
    const scores = logitsOf("ties", 500);
    const sampler = new Sampler({ temperature: 0 });
    expect(sampler.greedy).toBe(true);
    expect(sampler.next(scores, [])).toBe(argmax(scores));
    expect(argmax(Float32Array.of(1, 3, 3, -2))).toBe(1);
    expect(argmax(Float32Array.of(1, NaN, 3, NaN))).toBe(1);
    expect(new Sampler({ temperature: 0, repetitionPenalty: 1.2 }).greedy).toBe(false);
  });

  test("the same seed gives the same tokens; every token is a candidate; topK 1 is greedy", () => {
    const scores = logitsOf("peaked", 5000);
    const options = { temperature: 0.9, topK: 20, topP: 0.9, seed: rng.int(0, 2 ** 31) };
    const a = new Sampler(options),
      b = new Sampler(options);
    const allowed = new Set(referenceCandidates(scores, 0.9, 20, 0.9).ids);
    for (let i = 0; i < 50; i++) {
      const t = a.next(scores, []);
      expect(b.next(scores, [])).toBe(t);
      expect(allowed.has(t)).toBe(true);
    }
    expect(new Sampler({ temperature: 2, topK: 1 }).next(scores, [])).toBe(argmax(scores));
  });

  test("neighbouring seeds, 0 and 1 among them, give different draws (a batch seeds its rows seed, seed + 1, ...)", () => {
    const scores = Float32Array.from({ length: 64 }, () => rng.normal());
    const draws = (seed: number) => {
      const sampler = new Sampler({ temperature: 1, seed });
      return Array.from({ length: 32 }, () => sampler.next(scores, []));
    };
    const base = rng.int(0, 2 ** 31);
    for (const [a, b] of [
      [0, 1],
      [base, base + 1],
      [2 ** 32 - 1, 0],
    ])
      expect({ a, b, same: draws(a).join() === draws(b).join() }).toEqual({ a, b, same: false });
  });

  test("draws follow the candidates' probabilities", () => {
    // Three candidates with probabilities 0.5, 0.3, 0.2 (and the rest cut by topK).
    const scores = Float32Array.from([Math.log(0.3), -50, Math.log(0.5), Math.log(0.2), -60]);
    const sampler = new Sampler({ temperature: 1, topK: 3, seed: rng.int(0, 2 ** 31) });
    const counts = new Map<number, number>();
    const draws = 20000;
    for (let i = 0; i < draws; i++) {
      const t = sampler.next(scores, []);
      counts.set(t, (counts.get(t) ?? 0) + 1);
    }
    // Five standard deviations of a binomial count: fails by chance about once in 10^6 runs.
    for (const [id, p] of [
      [2, 0.5],
      [0, 0.3],
      [3, 0.2],
    ] as const)
      expect(Math.abs((counts.get(id) ?? 0) - p * draws)).toBeLessThan(5 * Math.sqrt(draws * p * (1 - p)));
    expect(counts.get(1) ?? 0).toBe(0);
  });

  test("bad options throw", () => {
    expect(() => validateSampling({ temperature: -1 })).toThrow(/temperature must be a finite number >= 0/);
    expect(() => validateSampling({ topK: 1.5 })).toThrow(/topK must be an integer >= 0/);
    expect(() => validateSampling({ topP: 0 })).toThrow(/topP must be a number in \(0, 1\]/);
    expect(() => validateSampling({ repetitionPenalty: 0 })).toThrow(/repetitionPenalty must be a finite number > 0/);
    expect(() => validateSampling({ seed: 0.5 })).toThrow(/seed must be an integer/);
  });
});

/** A row's top candidates from the CPU kernel. */
function topOf(scores: Float32Array, temperature: number, k: number): RowCandidates {
  const logits = Tensor.from(scores, [1, scores.length]);
  const t = Tensor.from(Float32Array.of(temperature), [1]);
  const c = kernels.topCandidates({ logits, temperature: t, k });
  try {
    return {
      k,
      vocab: scores.length,
      count: (c.count.toArray() as Int32Array)[0],
      ids: c.ids.toArray() as Int32Array,
      scores: c.scores.toFloat32Array(),
      max: c.max.toFloat32Array()[0],
      mass: c.mass.toFloat32Array()[0],
    };
  } finally {
    for (const x of [logits, t, ...Object.values(c)]) x.dispose();
  }
}

describe("candidatesFromTop settles what the top candidates can, exactly as the whole row would", () => {
  const cases: Array<[string, number, number, number]> = [];
  for (const kind of ["uniform", "peaked", "ties"])
    for (const [temperature, topK, topP] of [
      [0.7, 0, 0.9],
      [0.3, 40, 1],
      [1.5, 5, 0.5],
      [1, 0, 1],
      [1, 300, 1],
      [0.5, 100, 0.95],
      [2, 0, 0.999],
    ] as const)
      cases.push([kind, temperature, topK, topP]);
  test.each(cases)("%s logits, temperature %f, topK %i, topP %f", (kind, temperature, topK, topP) => {
    const scores = logitsOf(kind, 5000),
      k = 256;
    const got = candidatesFromTop(topOf(scores, temperature, k), { temperature, topK, topP });
    const want = samplingCandidates(scores, { temperature, topK, topP });
    // Settled exactly when the nucleus or topK lies within the k candidates; never for plain temperature.
    const settles = topK > 0 ? topK <= k : topP < 1 && want.ids.length <= k;
    if (!settles) {
      expect(got).toBeUndefined();
      return;
    }
    // ...unless the nucleus's edge lies within the f32 mass's error of the cut (left to the whole row).
    if (topK === 0 && got === undefined) {
      let all = 0;
      for (const x of scores) if (!Number.isNaN(x)) all += Math.exp((x - Math.max(...want.ids.map((i) => scores[i]))) / temperature);
      const last = want.weights[want.weights.length - 1];
      const edge = Math.min(Math.abs(want.total - topP * all), Math.abs(topP * all - (want.total - last)));
      expect({ seed: rng.seed, nearEdge: edge <= 2e-5 * topP * all }).toEqual({ seed: rng.seed, nearEdge: true });
      return;
    }
    expect(got).toBeDefined();
    expect(Array.from(got!.ids)).toEqual(Array.from(want.ids));
    got!.weights.forEach((w, i) => expect(Math.abs(w - want.weights[i])).toBeLessThanOrEqual(1e-12 * Math.max(1, want.weights[i])));
    expect(Math.abs(got!.total - want.total)).toBeLessThanOrEqual(1e-9 * want.total);
  });

  test("a nucleus whose edge lies within the mass's f32 error of the cut is left to the whole row", () => {
    // Two likely tokens and a distinct tail; the cut placed exactly at the second token's edge.
    const scores = Float32Array.from({ length: 40 }, (_, i) => (i === 0 ? 5 : i === 1 ? 4 : -i / 8));
    const row = topOf(scores, 1, 8);
    const top2 = 1 + Math.exp(4 - 5);
    const atEdge = top2 / row.mass;
    expect(candidatesFromTop(row, { temperature: 1, topK: 0, topP: atEdge })).toBeUndefined();
    // Clear of the edge on either side: settled, with one token or two.
    expect(Array.from(candidatesFromTop(row, { temperature: 1, topK: 0, topP: atEdge * (1 - 1e-3) })!.ids)).toEqual([0, 1]);
    expect(Array.from(candidatesFromTop(row, { temperature: 1, topK: 0, topP: atEdge * (1 + 1e-3) })!.ids)).toEqual([0, 1, 2]);
    const want = samplingCandidates(scores, { temperature: 1, topK: 0, topP: atEdge * (1 + 1e-3) });
    expect(Array.from(want.ids)).toEqual([0, 1, 2]);
  });

  test("a row with fewer candidates than k is complete; more candidates than were stored is not", () => {
    const scores = Float32Array.from([2, NaN, 1, NaN, 3]);
    const got = candidatesFromTop(topOf(scores, 1, 4), { temperature: 1, topK: 0, topP: 1 });
    expect(Array.from(got!.ids)).toEqual([4, 0, 2]);
    const flat = new Float32Array(300).fill(1.5);
    expect(candidatesFromTop(topOf(flat, 1, 8), { temperature: 1, topK: 5, topP: 1 })).toBeUndefined();
  });
});

describe("Sampler.nextFromCandidates", () => {
  test("plain temperature draws follow the softmax, reading the row only when a draw passes the candidates", () => {
    const scores = Float32Array.from({ length: 12 }, () => rng.normal() * 1.5);
    const temperature = 0.9,
      k = 3;
    const row = topOf(scores, temperature, k);
    const sampler = new Sampler({ temperature, seed: rng.int(0, 2 ** 31) });
    const max = Math.max(...scores);
    const weights = Array.from(scores, (v) => Math.exp((v - max) / temperature));
    const total = weights.reduce((a, b) => a + b, 0);
    const tail = weights.filter((_, j) => !Array.from(row.ids.subarray(0, row.count)).includes(j)).reduce((a, b) => a + b, 0) / total;
    const draws = 20000;
    const counts = new Array(12).fill(0);
    let rowsRead = 0;
    for (let i = 0; i < draws; i++)
      counts[
        sampler.nextFromCandidates(row, () => {
          rowsRead++;
          return scores;
        })
      ]++;
    // Five standard deviations of a binomial count: fails by chance about once in 10^6 runs.
    const within = (n: number, p: number) => expect(Math.abs(n - p * draws)).toBeLessThan(5 * Math.sqrt(draws * p * (1 - p)) + 1);
    weights.forEach((w, j) => within(counts[j], w / total));
    within(rowsRead, tail);
  });

  test.each(["uniform", "peaked", "ties"])(
    `seed ${rng.seed}: plain temperature picks the token next() picks from the whole row, seed for seed, however many candidates the row kept (%s logits)`,
    (kind) => {
      // The draw walks the same order on both paths (and a batch mate's topK can make the device
      // keep more candidates), so a seed gives one token: a request preempted and prefilled again
      // (next() on the prompt's logits) goes on as it would have.
      const scores = logitsOf(kind, 3000);
      const temperature = [0.5, 1, 2][rng.int(0, 2)];
      // topK as large as the vocabulary is plain temperature too; the device then keeps every token.
      for (const [k, topK] of [
        [8, 0],
        [256, 0],
        [300, 0],
        [1000, 0],
        [scores.length, scores.length],
      ]) {
        const row = topOf(scores, temperature, k);
        for (let n = 0; n < 40; n++) {
          const seed = rng.int(0, 2 ** 31);
          const got = new Sampler({ temperature, topK, seed }).nextFromCandidates(row, () => scores);
          expect({ k, seed, token: got }).toEqual({ k, seed, token: new Sampler({ temperature, topK, seed }).next(scores, []) });
        }
      }
    },
  );

  test("a topK beyond the candidates reads the whole row; one within them does not", () => {
    const scores = logitsOf("peaked", 2000);
    const row = topOf(scores, 1, 8);
    let rowsRead = 0;
    const whole = () => {
      rowsRead++;
      return scores;
    };
    const seed = rng.int(0, 2 ** 31);
    expect(new Sampler({ temperature: 1, topK: 20, seed }).nextFromCandidates(row, whole)).toBe(
      new Sampler({ temperature: 1, topK: 20, seed }).next(scores, []),
    );
    expect(rowsRead).toBe(1);
    new Sampler({ temperature: 1, topK: 5 }).nextFromCandidates(row, whole);
    expect(rowsRead).toBe(1);
  });
});

describe("sampleOnDevice", () => {
  test("picks the tokens next() picks from the whole logits, seed for seed, penalties included (CPU, llama fixture)", async () => {
    const model = await loadModel(path.join(fixtureRoot, "llama-tiny"), { device: "cpu", kvCacheBytes: 8 * 2 ** 20 });
    const prompts = readReference("llama-tiny")
      .cases.slice(0, 3)
      .map((c) => c.ids);
    const start = () => prefilledSequences(model.decoder, prompts);
    const viaRows = start(),
      viaCandidates = start();
    try {
      const vocab = model.config.vocabSize;
      const configs = [
        { temperature: 0.8 },
        { temperature: 1.3, repetitionPenalty: 1.2 },
        { temperature: 0.8, topP: 0.9 },
        { temperature: 1.2, topK: 20 },
        { temperature: 1, topK: 50, topP: 0.8 },
        { temperature: 0.9, topK: 40, repetitionPenalty: 1.3 },
        { temperature: 0.7, topP: 0.9, repetitionPenalty: 0.8 },
      ];
      for (const options of configs) {
        const seed = rng.int(0, 2 ** 31);
        const a = prompts.map((_, b) => new Sampler({ ...options, seed: seed + b }));
        const c = prompts.map((_, b) => new Sampler({ ...options, seed: seed + b }));
        let ids = prompts.map((p) => p[p.length - 1]);
        const seen = prompts.map((p) => [...p]);
        for (let step = 0; step < 6; step++) {
          const logits = model.decoder.step(viaRows, ids, "logits");
          const want = a.map((s, b) => s.next(logits.subarray(b * vocab, (b + 1) * vocab), seen[b]));
          expect(sampleOnDevice(model.decoder, viaCandidates, ids, c, seen)).toEqual(want);
          want.forEach((t, b) => seen[b].push(t));
          ids = want;
        }
      }
    } finally {
      for (const s of [...viaRows, ...viaCandidates]) s.dispose();
      await model.dispose();
    }
  });
});
