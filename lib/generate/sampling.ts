// Choosing the next token on the host: greedy, temperature, top-k, top-p and a repetition
// penalty, with a seeded generator so a run can be repeated exactly. The choice is made from a
// whole row of logits, or from a row's few most likely tokens (kernels.topCandidates, which
// step.ts runs where the logits are) with the whole row asked for only when those cannot settle
// it exactly. Nothing here runs the model.
import { show } from "../common/validate";

/** How each next token is chosen: greedy by default, else drawn after the repetition penalty, temperature, top-k and top-p. */
export interface SamplingOptions {
  /** 0 (the default) picks the most likely token. */
  temperature?: number;
  /** Keep only the k most likely tokens, and any tied with the k-th, as transformers does (0: all). */
  topK?: number;
  /** Keep the smallest set of tokens whose probability reaches p (1: all). */
  topP?: number;
  /** > 1 makes tokens already in the sequence less likely (as in transformers). */
  repetitionPenalty?: number;
  /**
   * Seed of the sampler's generator (an integer; its low 32 bits are used, so seeds 2^32 apart draw
   * alike). In generateBatch, prompt i draws with seed + i.
   */
  seed?: number;
}

export function validateSampling(o: SamplingOptions): Required<SamplingOptions> {
  const t = o.temperature ?? 0,
    k = o.topK ?? 0,
    p = o.topP ?? 1,
    r = o.repetitionPenalty ?? 1;
  if (typeof t !== "number" || !(t >= 0) || !Number.isFinite(t))
    throw new RangeError(`temperature must be a finite number >= 0, got ${show(o.temperature)}`);
  if (typeof k !== "number" || !Number.isInteger(k) || k < 0) throw new RangeError(`topK must be an integer >= 0, got ${show(o.topK)}`);
  if (typeof p !== "number" || !(p > 0 && p <= 1)) throw new RangeError(`topP must be a number in (0, 1], got ${show(o.topP)}`);
  if (typeof r !== "number" || !(r > 0) || !Number.isFinite(r))
    throw new RangeError(`repetitionPenalty must be a finite number > 0, got ${show(o.repetitionPenalty)}`);
  const seed = o.seed ?? Math.floor(Math.random() * 2 ** 32);
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer, and a safe one (|seed| < 2^53), got ${show(o.seed)}`);
  return { temperature: t, topK: k, topP: p, repetitionPenalty: r, seed };
}

/** A sampler for one sequence. */
export class Sampler {
  private state: number;
  private readonly o: Required<SamplingOptions>;

  constructor(options: SamplingOptions = {}) {
    this.o = validateSampling(options);
    this.state = this.o.seed >>> 0;
  }

  /**
   * Whether this sampler always takes the most likely token, so the decoder may choose it where
   * the logits are (a step's argmax output) instead of handing them over.
   */
  get greedy(): boolean {
    return this.o.temperature === 0 && this.o.repetitionPenalty === 1;
  }

  /**
   * Whether this sampler can choose from a row's top candidates (sampleOnDevice): it samples rather
   * than taking the most likely token. A repetition penalty is applied to the logits first.
   */
  get usesCandidates(): boolean {
    return this.o.temperature > 0;
  }

  get repetitionPenalty(): number {
    return this.o.repetitionPenalty;
  }

  get temperature(): number {
    return this.o.temperature;
  }

  get topK(): number {
    return this.o.topK;
  }

  /** Uniform in [0, 1) (mulberry32). */
  private random(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Picks a token from `logits` (one row, not modified), given the tokens seen so far (a list, or their distinct ids). */
  next(logits: Float32Array, seen: Iterable<number>): number {
    const { temperature, topK, topP, repetitionPenalty } = this.o;
    let scores = logits;
    if (repetitionPenalty !== 1) {
      scores = Float32Array.from(logits);
      for (const id of distinctIds(seen)) scores[id] = scores[id] > 0 ? scores[id] / repetitionPenalty : scores[id] * repetitionPenalty;
    }
    if (temperature === 0) return argmax(scores);
    if (isPlainTemperature(topK, topP, scores.length)) return this.plainTemperature(scores);
    return this.pick(samplingCandidates(scores, { temperature, topK, topP }));
  }

  /** Plain temperature sampling from a whole row, in the plain temperature order, with the draw `fraction` of the mass. */
  private plainTemperature(scores: Float32Array, fraction = this.random()): number {
    const { temperature } = this.o;
    let max = -Infinity;
    for (const x of scores) if (x > max) max = x;
    // No finite weights (every logit -Infinity or NaN, or one +Infinity): samplingCandidates settles it.
    if (!Number.isFinite(max)) return this.pick(samplingCandidates(scores, { temperature, topK: 0, topP: 1 }), fraction);
    const weights = new Float64Array(scores.length);
    let total = 0;
    for (let j = 0; j < scores.length; j++) {
      const w = Math.exp((scores[j] - max) / temperature);
      // biome-ignore lint/complexity/useMathMinMax: a NaN score must weigh 0, and Math.max would keep the NaN
      weights[j] = w > 0 ? w : 0;
      total += weights[j];
    }
    const order = leadingOf(scores);
    const draw = new Draw(fraction * total, order.leading[0]);
    const id = walkPlainOrder(scores, order, 0, (j) => draw.take(j, weights[j]));
    return id >= 0 ? id : draw.last;
  }

  /**
   * Picks a token from a row's top candidates (kernels.topCandidates), as next() would from the
   * whole row, and calls `wholeRow` for the row only when they cannot settle it: a topK beyond
   * them, a topP nucleus wider than them, more candidates than were stored, or a plain
   * temperature draw that lands beyond the candidates' share of the mass. A repetition penalty
   * must already be in the row (sampleOnDevice applies it where the logits are).
   */
  nextFromCandidates(row: RowCandidates, wholeRow: () => Float32Array): number {
    if (!this.usesCandidates) return this.next(wholeRow(), []);
    const { topK, topP } = this.o;
    if (isPlainTemperature(topK, topP, row.vocab))
      return row.count <= row.ids.length && Number.isFinite(row.max) && row.mass > 0
        ? this.drawThroughTail(row, wholeRow)
        : this.next(wholeRow(), []);
    const c = candidatesFromTop(row, this.o);
    return c ? this.pick(c) : this.next(wholeRow(), []);
  }

  /**
   * Plain temperature sampling in the plain temperature order, as next() draws: the candidates the
   * order begins with first, then (reading the row, which for a trained model's peaked logits the
   * draw seldom gets to) the rest of the order.
   */
  private drawThroughTail(row: RowCandidates, wholeRow: () => Float32Array): number {
    const { temperature } = this.o;
    const order = likeliestFirst(row);
    // Candidates beyond the leading tokens (a batch mate's topK asked for more) come later in the order.
    const leading = order.length > leadingTokens ? order.filter((i) => row.scores[i] >= row.scores[order[leadingTokens - 1]]) : order;
    const weight = (score: number) => Math.exp((score - row.max) / temperature);
    const fraction = this.random();
    const draw = new Draw(fraction * row.mass, row.ids[leading[0]]);
    // The mass is an f32 sum and next() sums in f64: a draw within the mass's error of an edge
    // between two tokens, or past the last, is left to the whole row, with the same fraction.
    const margin = massRelativeError * row.mass;
    for (const i of leading) {
      const w = weight(row.scores[i]);
      if (draw.take(row.ids[i], w)) return draw.clearOf(w, margin) ? row.ids[i] : this.plainTemperature(wholeRow(), fraction);
    }
    const scores = wholeRow();
    let landed = 0;
    const id = walkPlainOrder(scores, leadingOf(scores), leading.length, (j) => {
      landed = weight(scores[j]);
      return draw.take(j, landed);
    });
    return id >= 0 && draw.clearOf(landed, margin) ? id : this.plainTemperature(scores, fraction);
  }

  private pick({ ids, weights, total }: SamplingCandidates, fraction = this.random()): number {
    const draw = new Draw(fraction * total, ids[0]);
    for (let i = 0; i < ids.length; i++) if (draw.take(ids[i], weights[i])) return ids[i];
    return draw.last;
  }
}

/** A draw u in [0, total) walking tokens in order, each taking its weight off u. */
class Draw {
  constructor(
    private u: number,
    /** The last token with any weight: the answer when rounding leaves u just above the sum. */
    public last: number,
  ) {}

  /** Whether the draw lands on this token. */
  take(id: number, weight: number): boolean {
    if (weight === 0) return false;
    this.u -= weight;
    this.last = id;
    return this.u < 0;
  }

  /** After a take() that landed on a token of this weight: whether the draw is further than `margin` from either of its edges. */
  clearOf(weight: number, margin: number): boolean {
    return -this.u > margin && weight + this.u > margin;
  }
}

/**
 * Plain temperature sampling (no topK, no topP) walks a row's tokens in one order wherever it runs,
 * so that a seed picks the same token from the whole row (next) as from the device's top
 * candidates, whatever their number: the tokens scoring at least the leadingTokens-th largest
 * score, most likely first (ties: lower id first), then every other token in id order.
 */
export const leadingTokens = 256;

/**
 * The distinct ids of tokens seen, which a repetition penalty reads: a Set as it is, a list made one.
 * @example for (const id of distinctIds(member.seenIds)) row[id] /= penalty;
 */
export const distinctIds = (seen: Iterable<number>): ReadonlySet<number> => (seen instanceof Set ? seen : new Set(seen));

const isPlainTemperature = (topK: number, topP: number, vocab: number) => (topK === 0 || topK >= vocab) && topP >= 1;

/**
 * The start of the plain temperature order: the ids scoring at least `threshold` (the leadingTokens-th
 * largest score, or -Infinity in a row of fewer tokens), most likely first. The order goes on
 * with the tokens scoring below it, in id order.
 */
function leadingOf(scores: Float32Array): { leading: Int32Array; threshold: number } {
  const values = new Float32Array(scores.length);
  let count = 0;
  for (const x of scores) if (!Number.isNaN(x)) values[count++] = x;
  const threshold = count > leadingTokens ? kthLargest(values.subarray(0, count), leadingTokens) : -Infinity;
  const ids: number[] = [];
  for (let j = 0; j < scores.length; j++) if (scores[j] >= threshold) ids.push(j);
  return { leading: Int32Array.from(ids).sort((a, b) => scores[b] - scores[a] || a - b), threshold };
}

/**
 * Walks a row's ids in the plain temperature order from the `from`-th on, until `visit` returns
 * true: that id, or -1 past the last.
 */
function walkPlainOrder(
  scores: Float32Array,
  { leading, threshold }: { leading: Int32Array; threshold: number },
  from: number,
  visit: (id: number) => boolean,
): number {
  for (let n = from; n < leading.length; n++) if (visit(leading[n])) return leading[n];
  for (let j = 0; j < scores.length; j++) if (scores[j] < threshold && visit(j)) return j;
  return -1;
}

/** The k-th largest of `values` (1-based), by quickselect; `values` is reordered. */
function kthLargest(values: Float32Array, k: number): number {
  let lo = 0,
    hi = values.length - 1;
  const target = k - 1;
  while (lo < hi) {
    const pivot = values[(lo + hi) >>> 1];
    let i = lo,
      j = hi;
    while (i <= j) {
      while (values[i] > pivot) i++;
      while (values[j] < pivot) j--;
      if (i <= j) {
        [values[i], values[j]] = [values[j], values[i]];
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else break;
  }
  return values[target];
}

/** Indices of a row's candidates from most to least likely (ties: lower id first). */
function likeliestFirst(row: RowCandidates): number[] {
  return Array.from({ length: row.count }, (_, i) => i).sort((a, b) => row.scores[b] - row.scores[a] || row.ids[a] - row.ids[b]);
}

/** One row of kernels.topCandidates, read back. */
export interface RowCandidates {
  /** The k the kernel was asked for. */
  k: number;
  /** The row's length: the vocabulary. */
  vocab: number;
  /** How many logits are >= the k-th largest; more than ids.length means not all were stored. */
  count: number;
  /** Their ids and scores (the first min(count, ids.length) entries), in no particular order. */
  ids: Int32Array;
  scores: Float32Array;
  /** The row's largest logit and Σ exp((logit − max) / temperature). */
  max: number;
  mass: number;
}

/**
 * How many of `length` scores sorted best first topK keeps: the first topK and every later one
 * tied with the topK-th (transformers' top-k keeps each score not below the k-th largest).
 */
function throughTies(length: number, topK: number, score: (i: number) => number): number {
  if (topK >= length) return length;
  let end = topK;
  while (end < length && score(end) === score(topK - 1)) end++;
  return end;
}

/**
 * A bound on the relative error of kernels.topCandidates' mass: an f32 sum of f32 exponentials on
 * CUDA (about 1e-6 measured against f64), an f64 sum rounded to f32 on the CPU (2^-24).
 */
const massRelativeError = 1e-5;

/**
 * samplingCandidates from a row's top candidates instead of the whole row: the same tokens,
 * weights and order (except that a row cut by neither topK nor topP comes most likely first, not
 * in id order), or undefined when the candidates do not hold them all.
 */
export function candidatesFromTop(
  row: RowCandidates,
  { temperature, topK, topP }: { temperature: number; topK: number; topP: number },
): SamplingCandidates | undefined {
  const { k, count, max } = row;
  // Fewer than k candidates means every logit that is not NaN is among them.
  const complete = count < k;
  if (count > row.ids.length || (!complete && ((topK === 0 && topP >= 1) || topK > k))) return undefined;
  // An infinite logit makes the mass NaN: leave such a row to the whole-row path.
  if (!Number.isFinite(max) || !(row.mass > 0)) return undefined;
  const order = likeliestFirst(row);
  const n = topK > 0 ? throughTies(count, topK, (i) => row.scores[order[i]]) : count;
  const weights = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += weights[i] = Math.exp((row.scores[order[i]] - max) / temperature);
  // topP's share is of the tokens topK kept, or of the whole row.
  const total = topK > 0 || complete ? sum : row.mass;
  let kept = n,
    keptMass = sum;
  if (topP < 1) {
    keptMass = 0;
    kept = 0;
    while (kept < n && keptMass < topP * total) keptMass += weights[kept++];
    if (keptMass < topP * total && !(topK > 0 || complete)) return undefined;
    // The row's mass is summed in f32 on the device, next() sums it in f64: where the nucleus's
    // edge lies within the mass's error of the cut, the two could keep different tokens, so the
    // whole row settles it.
    if (total === row.mass) {
      const margin = massRelativeError * topP * total;
      const before = keptMass - weights[kept - 1];
      if (Math.abs(keptMass - topP * total) <= margin || Math.abs(topP * total - before) <= margin) return undefined;
    }
  }
  return { ids: Int32Array.from(order.slice(0, kept), (i) => row.ids[i]), weights: weights.slice(0, kept), total: keptMass };
}

/** The tokens a sampler may pick, in the order it walks them, and their unnormalised probabilities. */
export interface SamplingCandidates {
  ids: Int32Array;
  /** exp((score − max) / temperature) of each id. */
  weights: Float64Array;
  /** Their sum. */
  total: number;
}

// Scores are bucketed by their distance below the best one to find, in two passes, the fewest
// most likely tokens that settle topK and topP; only those are sorted. Buckets span at most
// 40 · temperature (weight e^-40); everything further down shares one last bucket.
const scoreBuckets = 2048;

/**
 * Candidates of a row with +Infinity scores (a repetition penalty near 0 divides logits into
 * overflow, say): the softmax's limit, in which those tokens share all the probability equally.
 * They all tie, so topK keeps every one; topP the fewest whose share reaches it, in id order.
 */
function infiniteCandidates(scores: Float32Array, topP: number): SamplingCandidates {
  const infinite: number[] = [];
  for (let i = 0; i < scores.length; i++) if (scores[i] === Infinity) infinite.push(i);
  let count = infinite.length;
  if (topP < 1) count = Math.min(count, Math.max(1, Math.ceil(topP * count)));
  return { ids: Int32Array.from(infinite.slice(0, count)), weights: new Float64Array(count).fill(1), total: count };
}

/**
 * The candidates of temperature sampling after topK and topP (temperature > 0): all tokens, in id
 * order, when neither applies; else the kept tokens (topK keeps every token tied with its k-th)
 * from most to least likely (ties: lower id first), exactly the prefix of the full sort. A NaN score is never a candidate.
 * @example const { ids, weights, total } = samplingCandidates(logits, { temperature: 0.7, topK: 0, topP: 0.9 });
 */
export function samplingCandidates(
  scores: Float32Array,
  { temperature, topK, topP }: { temperature: number; topK: number; topP: number },
): SamplingCandidates {
  let max = -Infinity,
    min = Infinity,
    nans = 0;
  for (let i = 0; i < scores.length; i++) {
    if (scores[i] > max) max = scores[i];
    if (scores[i] < min) min = scores[i];
    if (Number.isNaN(scores[i])) nans++;
  }
  if (max === -Infinity) return { ids: Int32Array.of(argmax(scores)), weights: Float64Array.of(1), total: 1 };
  if (max === Infinity) return infiniteCandidates(scores, topP);
  const all = new Float64Array(scores.length);
  let allTotal = 0;
  for (let i = 0; i < scores.length; i++) {
    const w = Math.exp((scores[i] - max) / temperature);
    // biome-ignore lint/complexity/useMathMinMax: a NaN score must weigh 0, and Math.max would keep the NaN
    all[i] = w > 0 ? w : 0;
    allTotal += all[i];
  }
  if ((topK === 0 || topK >= scores.length) && topP >= 1) {
    const ids = new Int32Array(scores.length - nans);
    for (let i = 0, n = 0; i < scores.length; i++) if (!Number.isNaN(scores[i])) ids[n++] = i;
    return { ids, weights: nans ? Float64Array.from(ids, (i) => all[i]) : all, total: allTotal };
  }

  // Bucket b holds the scores in (max − (b+1)·width, max − b·width]; a better score never lands
  // in a later bucket, so whole buckets from the front are a prefix of the sorted order.
  const scale = scoreBuckets / (Math.min(40 * temperature, max - min) || 1);
  const bucketOf = (score: number) => Math.min(scoreBuckets, Math.floor((max - score) * scale));
  const counts = new Int32Array(scoreBuckets + 2);
  const mass = new Float64Array(scoreBuckets + 1);
  for (let i = 0; i < scores.length; i++) {
    if (Number.isNaN(scores[i])) continue;
    const b = bucketOf(scores[i]);
    counts[b + 1]++;
    mass[b] += all[i];
  }
  let last = 0,
    seen = 0,
    seenMass = 0;
  for (; last < scoreBuckets; last++) {
    seen += counts[last + 1];
    seenMass += mass[last];
    if (topK > 0 ? seen >= topK : seenMass >= topP * allTotal) break;
  }
  // Counting sort by bucket, then each bucket sorted on its own.
  for (let b = 1; b <= last + 1; b++) counts[b] += counts[b - 1];
  const kept = new Int32Array(counts[last + 1]);
  const fill = counts.slice(0, last + 1);
  for (let i = 0; i < scores.length; i++) {
    if (Number.isNaN(scores[i])) continue;
    const b = bucketOf(scores[i]);
    if (b <= last) kept[fill[b]++] = i;
  }
  const bySortOrder = (a: number, b: number) => scores[b] - scores[a] || a - b;
  for (let b = 0; b <= last; b++) kept.subarray(counts[b], counts[b + 1]).sort(bySortOrder);

  const ids =
    topK > 0
      ? kept.subarray(
          0,
          throughTies(kept.length, topK, (i) => scores[kept[i]]),
        )
      : kept;
  // topP's share is of the tokens topK kept, or of every token.
  let total = topK > 0 ? 0 : allTotal;
  if (topK > 0) for (const id of ids) total += all[id];
  let count = ids.length;
  if (topP < 1) {
    let sum = 0;
    count = 0;
    while (count < ids.length && sum < topP * total) sum += all[ids[count++]];
    total = sum;
  }
  const weights = new Float64Array(count);
  for (let i = 0; i < count; i++) weights[i] = all[ids[i]];
  return { ids: ids.slice(0, count), weights, total };
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
