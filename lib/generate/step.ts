// One decode step of the generation loop (Decoder.step) and the tokens it chooses: the
// device-side parts of a choice (argmax, repetition penalty, top candidates) run here, where the
// logits are, and the host-side choice is the Sampler's (sampling.ts).
import * as kernels from "../kernels";
import type { Decoder } from "../model/decoder";
import type { Sequence } from "../model/sequence";
import { Tensor } from "../runtime/tensor";
import { deviceLogprobs, type LogprobIds } from "./logprobs";
import { distinctIds, leadingTokens, type RowCandidates, type Sampler } from "./sampling";

/**
 * One decode step and each sequence's next token, chosen by its sampler given the tokens it has
 * seen: greedy where the logits are when every sampler is greedy, sampled from the device's top
 * candidates when every sampler samples, or else (greedy with a repetition penalty, or a batch
 * mixing greedy and sampling requests) from whole rows read back.
 * @example const next = nextTokens(model.decoder, seqs, lastTokens, samplers, seen);
 */
export function nextTokens(
  decoder: Decoder,
  seqs: readonly Sequence[],
  ids: readonly number[],
  samplers: readonly Sampler[],
  seen: ReadonlyArray<Iterable<number>>,
): number[] {
  const choice = choiceFor(samplers);
  if (choice === "argmax") return Array.from(decoder.step(seqs, ids, "argmax"));
  if (choice === "candidates") return sampleOnDevice(decoder, seqs, ids, samplers, seen);
  return sampleWholeRows(decoder, seqs, ids, samplers, seen);
}

/** Where a batch's next tokens are chosen (nextTokens): see its comment. */
function choiceFor(samplers: readonly Sampler[]): "argmax" | "candidates" | "rows" {
  if (samplers.every((s) => s.greedy)) return "argmax";
  return samplers.every((s) => s.usesCandidates) ? "candidates" : "rows";
}

/** Each sampler's choice from its row of `rows` [samplers · vocab], read back. */
function chooseFromRows(rows: Float32Array, samplers: readonly Sampler[], seen: ReadonlyArray<Iterable<number>>): number[] {
  const vocab = rows.length / samplers.length;
  return samplers.map((s, b) => s.next(rows.subarray(b * vocab, (b + 1) * vocab), seen[b]));
}

/**
 * nextTokens with each chosen token's log-probability and the `k` most likely tokens of its row
 * (logprobs.ts), taken from the logits as the model gave them: a repetition penalty is applied to
 * a copy. The tokens are the ones nextTokens would choose.
 * @example const { tokens, logprobs } = nextTokensWithLogprobs(model.decoder, seqs, lastTokens, samplers, seen, 5);
 */
export function nextTokensWithLogprobs(
  decoder: Decoder,
  seqs: readonly Sequence[],
  ids: readonly number[],
  samplers: readonly Sampler[],
  seen: ReadonlyArray<Iterable<number>>,
  k: number,
): { tokens: number[]; logprobs: LogprobIds[] } {
  const choice = choiceFor(samplers);
  return decoder.step(seqs, ids, (logits) => {
    // Only the device sampling path applies the penalty to the logits themselves.
    const penalised = choice === "candidates" && samplers.some((s) => s.repetitionPenalty !== 1);
    const model = penalised ? logits.to(logits.device) : logits;
    try {
      let tokens: number[];
      if (choice === "argmax") {
        const best = kernels.argmax({ logits });
        tokens = Array.from(best.toArray() as Int32Array);
        best.dispose();
      } else if (choice === "candidates") tokens = sampleFromLogits(logits, samplers, seen);
      else tokens = chooseFromRows(logits.toFloat32Array(), samplers, seen);
      return { tokens, logprobs: deviceLogprobs(model, k, tokens) };
    } finally {
      if (model !== logits) model.dispose();
    }
  });
}

/**
 * One decode step whose next tokens are chosen from the whole logits, read back: sequence b's by
 * samplers[b], given the tokens it has seen.
 * @example const next = sampleWholeRows(model.decoder, seqs, lastTokens, samplers, seen);
 */
export function sampleWholeRows(
  decoder: Decoder,
  seqs: readonly Sequence[],
  ids: readonly number[],
  samplers: readonly Sampler[],
  seen: ReadonlyArray<Iterable<number>>,
): number[] {
  return chooseFromRows(decoder.step(seqs, ids, "logits"), samplers, seen);
}

// Candidates per row kept on the device for sampling: enough for a topK up to this, for most topP
// nuclei of a trained model, and for the leading tokens plain temperature sampling walks first; a
// row they cannot settle is read back whole.
const deviceCandidates = leadingTokens;
const maxDeviceCandidates = 4096;

/**
 * One decode step whose next tokens are sampled, sequence b by samplers[b] (each one
 * usesCandidates) given the tokens it has seen (for a repetition penalty). On CUDA the logits
 * stay on the device: the penalty is applied there, each row's top candidates and softmax mass
 * come back, and a row is read back whole only when they cannot settle its choice.
 * @example const next = sampleOnDevice(model.decoder, seqs, lastTokens, samplers, seen);
 */
export function sampleOnDevice(
  decoder: Decoder,
  seqs: readonly Sequence[],
  ids: readonly number[],
  samplers: readonly Sampler[],
  seen: ReadonlyArray<Iterable<number>>,
): number[] {
  return decoder.step(seqs, ids, (logits) => sampleFromLogits(logits, samplers, seen));
}

/** sampleOnDevice's choice from a step's logits [rows, vocab], which the repetition penalty changes in place. */
function sampleFromLogits(logits: Tensor, samplers: readonly Sampler[], seen: ReadonlyArray<Iterable<number>>): number[] {
  const [rows, vocab] = logits.shape;
  const wantedK = Math.max(deviceCandidates, ...samplers.map((s) => s.topK));
  const k = Math.min(vocab, wantedK <= maxDeviceCandidates ? wantedK : deviceCandidates);
  const made: Tensor[] = [];
  try {
    applyRepetitionPenalty(logits, samplers, seen, made);
    const temperature = Tensor.from(
      Float32Array.from(samplers, (s) => s.temperature),
      [rows],
      { device: logits.device },
    );
    made.push(temperature);
    const c = kernels.topCandidates({ logits, temperature, k });
    made.push(...Object.values(c));
    const capacity = c.ids.shape[1];
    const candIds = c.ids.toArray() as Int32Array,
      scores = c.scores.toFloat32Array(),
      count = c.count.toArray() as Int32Array;
    const max = c.max.toFloat32Array(),
      mass = c.mass.toFloat32Array();
    return samplers.map((sampler, b) => {
      const at = b * capacity;
      const row: RowCandidates = {
        k,
        vocab,
        count: count[b],
        ids: candIds.subarray(at, at + capacity),
        scores: scores.subarray(at, at + capacity),
        max: max[b],
        mass: mass[b],
      };
      return sampler.nextFromCandidates(row, () => {
        const whole = logits.rows(b, 1);
        made.push(whole);
        return whole.toFloat32Array();
      });
    });
  } finally {
    for (const t of made) t.dispose();
  }
}

/** Each sampler's repetition penalty on its row of `logits`, in place, over the distinct tokens it has seen. */
function applyRepetitionPenalty(logits: Tensor, samplers: readonly Sampler[], seen: ReadonlyArray<Iterable<number>>, made: Tensor[]): void {
  const offsets = new Int32Array(samplers.length + 1);
  const tokens: number[] = [];
  samplers.forEach((s, b) => {
    if (s.repetitionPenalty !== 1) for (const id of distinctIds(seen[b])) tokens.push(id);
    offsets[b + 1] = tokens.length;
  });
  if (tokens.length === 0) return;
  const device = logits.device;
  const upload = (t: Tensor) => {
    made.push(t);
    return t;
  };
  kernels.repetitionPenalty({
    logits,
    ids: upload(Tensor.from(Int32Array.from(tokens), [tokens.length], { device })),
    offsets: upload(Tensor.from(offsets, [offsets.length], { device })),
    penalty: upload(
      Tensor.from(
        Float32Array.from(samplers, (s) => s.repetitionPenalty),
        [samplers.length],
        { device },
      ),
    ),
  });
}
