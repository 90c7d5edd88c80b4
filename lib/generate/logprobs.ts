// Log-probabilities of generated tokens and their most likely alternatives, in OpenAI's shape.
// They are of the model's own distribution: the log-softmax over the whole vocabulary of the raw
// logits, before temperature, repetition penalty, topK or topP shape the choice. From a row on the
// host they are computed in float64; where the logits stay on the device, from the row's top
// candidates and softmax mass (kernels.topCandidates at temperature 1), reading back one logit
// when the chosen token is not among them.
import type { Tokenizer } from "../checkpoint/tokenizer";
import * as kernels from "../kernels";
import { Tensor } from "../runtime/tensor";

/** One alternative at a position: a token, its log-probability and its bytes. */
export interface TopLogprob {
  /** The token's text (empty when the model has no tokenizer). */
  token: string;
  /** Its id in the vocabulary. */
  id: number;
  /** Natural-log probability under the model, from the softmax over the whole vocabulary. */
  logprob: number;
  /** The bytes the token stands for (null when the model has no tokenizer). */
  bytes: number[] | null;
}

/** A generated token's log-probability and the `logprobs` most likely tokens at its position. */
export interface TokenLogprob extends TopLogprob {
  /** Most likely first (ties: lower id first); as many as the `logprobs` option asked for. */
  top_logprobs: TopLogprob[];
}

/** Most alternatives per token one may ask for. */
export const maxTopLogprobs = 256;

/** Ids and log-probabilities before they are spelled out with the tokenizer. */
export interface LogprobIds {
  id: number;
  logprob: number;
  top: Array<{ id: number; logprob: number }>;
}

/**
 * The chosen token's log-probability and the k most likely tokens of one row of logits, in
 * float64 over the whole row (NaN logits left out).
 * @example const { logprob, top } = rowLogprobs(logits, argmax(logits), 5);
 */
export function rowLogprobs(row: Float32Array, chosen: number, k: number): LogprobIds {
  let max = Number.NEGATIVE_INFINITY;
  for (const x of row) if (x > max) max = x;
  let sum = 0;
  for (const x of row) if (!Number.isNaN(x)) sum += Math.exp(x - max);
  const logSumExp = max + Math.log(sum);
  const top = topIds(row, Math.min(k, row.length)).map((id) => ({ id, logprob: row[id] - logSumExp }));
  return { id: chosen, logprob: row[chosen] - logSumExp, top };
}

/** The k largest entries' indices, largest first, lower index first among equals (NaN left out). */
function topIds(row: Float32Array, k: number): number[] {
  const best: number[] = [];
  const before = (a: number, b: number) => row[a] > row[b] || (row[a] === row[b] && a < b);
  for (let j = 0; j < row.length && k > 0; j++) {
    if (Number.isNaN(row[j])) continue;
    if (best.length === k && !before(j, best[k - 1])) continue;
    let at = best.length === k ? k - 1 : best.length;
    while (at > 0 && before(j, best[at - 1])) at--;
    best.splice(at, 0, j);
    if (best.length > k) best.pop();
  }
  return best;
}

/**
 * Logprobs of every row of `logits` [rows, vocab] where the logits are (on CUDA, the device): the
 * top k candidates and the softmax mass come back, and one logit for row b's token `chosen[b]`
 * when it is not among them. A row whose k-th value is tied beyond what was stored is read whole.
 * @example const lp = deviceLogprobs(logits, 5, tokens);
 */
export function deviceLogprobs(logits: Tensor, k: number, chosen: readonly number[]): LogprobIds[] {
  const [rows, vocab] = logits.shape;
  const wanted = Math.max(1, Math.min(k, vocab));
  const made: Tensor[] = [];
  try {
    const temperature = Tensor.from(new Float32Array(rows).fill(1), [rows], { device: logits.device });
    made.push(temperature);
    const c = kernels.topCandidates({ logits, temperature, k: wanted });
    made.push(...Object.values(c));
    const capacity = c.ids.shape[1];
    const ids = c.ids.toArray() as Int32Array,
      scores = c.scores.toFloat32Array(),
      count = c.count.toArray() as Int32Array,
      max = c.max.toFloat32Array(),
      mass = c.mass.toFloat32Array();
    return chosen.map((token, b) => {
      const readRow = () => {
        const row = logits.rows(b, 1);
        made.push(row);
        return row.toFloat32Array();
      };
      if (count[b] > capacity) return rowLogprobs(readRow(), token, k);
      const logSumExp = max[b] + Math.log(mass[b]);
      const at = b * capacity;
      const n = Math.min(count[b], capacity);
      const order = Array.from({ length: n }, (_, i) => at + i).sort((x, y) => scores[y] - scores[x] || ids[x] - ids[y]);
      const top = order.slice(0, k).map((i) => ({ id: ids[i], logprob: scores[i] - logSumExp }));
      const found = order.find((i) => ids[i] === token);
      let logit: number;
      if (found !== undefined) logit = scores[found];
      else {
        const flat = logits.reshape([rows * vocab, 1]);
        const one = flat.rows(b * vocab + token, 1);
        made.push(flat, one);
        logit = one.toFloat32Array()[0];
      }
      return { id: token, logprob: logit - logSumExp, top };
    });
  } finally {
    for (const t of made) t.dispose();
  }
}

/**
 * Ids and log-probabilities spelled out with the tokenizer (token text and bytes), in OpenAI's shape.
 * @example const entry = describeLogprobs(rowLogprobs(logits, next, 3), model.optionalTokenizer);
 */
export function describeLogprobs(raw: LogprobIds, tokenizer: Tokenizer | undefined): TokenLogprob {
  const spell = (id: number, logprob: number): TopLogprob =>
    tokenizer ? { token: tokenizer.decode([id]), id, logprob, bytes: tokenizer.tokenBytes(id) } : { token: "", id, logprob, bytes: null };
  return { ...spell(raw.id, raw.logprob), top_logprobs: raw.top.map((t) => spell(t.id, t.logprob)) };
}
