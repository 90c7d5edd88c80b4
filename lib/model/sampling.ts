// Choosing the next token from logits: greedy, temperature, top-k, top-p and a repetition
// penalty, with a seeded generator so a run can be repeated exactly.

export interface SamplingOptions {
  /** 0 (the default) picks the most likely token. */
  temperature?: number;
  /** Keep only the k most likely tokens (0: all). */
  topK?: number;
  /** Keep the smallest set of tokens whose probability reaches p (1: all). */
  topP?: number;
  /** > 1 makes tokens already in the sequence less likely (as in transformers). */
  repetitionPenalty?: number;
  /** Seed of the sampler's generator. */
  seed?: number;
}

export function validateSampling(o: SamplingOptions): Required<SamplingOptions> {
  const t = o.temperature ?? 0, k = o.topK ?? 0, p = o.topP ?? 1, r = o.repetitionPenalty ?? 1;
  if (!(t >= 0) || !Number.isFinite(t)) throw new RangeError(`temperature must be >= 0, got ${o.temperature}`);
  if (!Number.isInteger(k) || k < 0) throw new RangeError(`topK must be an integer >= 0, got ${o.topK}`);
  if (!(p > 0 && p <= 1)) throw new RangeError(`topP must be in (0, 1], got ${o.topP}`);
  if (!(r > 0) || !Number.isFinite(r)) throw new RangeError(`repetitionPenalty must be > 0, got ${o.repetitionPenalty}`);
  const seed = o.seed ?? Math.floor(Math.random() * 2 ** 32);
  if (!Number.isInteger(seed)) throw new RangeError(`seed must be an integer, got ${o.seed}`);
  return { temperature: t, topK: k, topP: p, repetitionPenalty: r, seed };
}

/** A sampler for one sequence. */
export class Sampler {
  private state: number;
  private readonly o: Required<SamplingOptions>;

  constructor(options: SamplingOptions = {}) {
    this.o = validateSampling(options);
    this.state = this.o.seed >>> 0 || 1;
  }

  /**
   * Whether this sampler always takes the most likely token, so the decoder may choose it where
   * the logits are (Decoder.decodeGreedy) instead of handing them over.
   */
  get greedy(): boolean {
    return this.o.temperature === 0 && this.o.repetitionPenalty === 1;
  }

  /** Uniform in [0, 1) (mulberry32). */
  private random(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Picks a token from `logits` (one row, not modified), given the tokens seen so far. */
  next(logits: Float32Array, seen: readonly number[]): number {
    const { temperature, topK, topP, repetitionPenalty } = this.o;
    let scores = logits;
    if (repetitionPenalty !== 1 && seen.length) {
      scores = Float32Array.from(logits);
      for (const id of new Set(seen)) scores[id] = scores[id] > 0 ? scores[id] / repetitionPenalty : scores[id] * repetitionPenalty;
    }
    if (temperature === 0) return argmax(scores);

    let candidates = Array.from(scores.keys()).sort((a, b) => scores[b] - scores[a] || a - b);
    if (topK > 0) candidates = candidates.slice(0, topK);
    const max = scores[candidates[0]];
    let probs = candidates.map((id) => Math.exp((scores[id] - max) / temperature));
    let total = probs.reduce((a, b) => a + b, 0);
    if (topP < 1) {
      let kept = 0, mass = 0;
      while (kept < probs.length && mass < topP * total) mass += probs[kept++];
      candidates = candidates.slice(0, kept);
      probs = probs.slice(0, kept);
      total = mass;
    }
    let u = this.random() * total;
    for (let i = 0; i < candidates.length; i++) {
      u -= probs[i];
      if (u < 0) return candidates[i];
    }
    return candidates[candidates.length - 1];
  }
}

/** Index of the largest value (lowest index on ties; the first NaN if there is one). */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 0; i < values.length; i++) {
    // NaN counts as the largest value, as in kernels.argmax, so greedy picks agree wherever they run.
    if (Number.isNaN(values[i])) return i;
    if (values[i] > values[best]) best = i;
  }
  return best;
}
