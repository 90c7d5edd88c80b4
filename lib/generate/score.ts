// Teacher-forced scoring: how likely the model finds a continuation after a prompt. The prompt is
// prefilled on a fresh sequence (the hybrid policy choosing lazy layers as in generation), then the
// continuation, whose prefill gives the log-probability of each next continuation token (kernel
// tokenLogprobs: float64 sums on the CPU, on the device on CUDA). The first token's comes from the
// prompt's last row of logits, in float64 here.
import { checkTokenIds } from "../checkpoint/token-ids";
import { optionalSignal, optionsObject, show } from "../common/validate";
import type { HybridState } from "../hybrid/policy";
import { disposedDuring, type GenerationModel, whileLive } from "./loop";
import { checkSessionOptions, type SessionOptions } from "./options";
import { checkEncodedIds, checkPromptFits, noTokenizerError, type Prompt, promptIdsAsync } from "./prompt";
import { GenerationSequence } from "./sequence";

/** Text (tokenized without special tokens) or token ids scored after a prompt. */
export type Continuation = string | readonly number[] | Int32Array;

/** One prompt and the continuation to score after it. */
export interface ScoreRequest {
  prompt: Prompt;
  continuation: Continuation;
}

/** score's options: the session options the prompt is prefilled with, and a signal. */
export interface ScoreOptions extends SessionOptions {
  /**
   * Checked between requests and between the prefill's steps (a chunk through one layer):
   * scoring stops with an AbortError and frees what it held.
   */
  signal?: AbortSignal;
}

/** A continuation's teacher-forced log-probabilities given its prompt. */
export interface ScoreResult {
  /** The continuation's token ids. */
  tokens: number[];
  /** Natural-log probability of each continuation token given the prompt and the tokens before it. */
  logprobs: number[];
  /** The sum of `logprobs`: the continuation's log-likelihood. */
  sum: number;
  /** exp(−sum / tokens): the continuation's perplexity. */
  perplexity: number;
  /** A snapshot of the sequence's lazy layers and ratios after scoring (mode "off": none). */
  hybrid: HybridState;
}

/**
 * Scores each request on its own fresh sequence, one after another, freeing every sequence's KV
 * pages when it is done or fails. Errors name the request (prefixed by `what`).
 * @example
 * const [result] = await scoreRequests(model, [{ prompt: "The capital of France is", continuation: " Paris" }], {}, "score");
 * console.log(result.logprobs, result.perplexity);
 */
export async function scoreRequests(
  model: GenerationModel,
  requests: readonly ScoreRequest[],
  options: ScoreOptions | undefined,
  what: string,
  isLive: () => boolean = () => true,
): Promise<ScoreResult[]> {
  const o = optionsObject(options, `${what}: options`);
  const signal = optionalSignal(o.signal, `${what}: signal`);
  const session = checkSessionOptions(o, model.decoder, what, ["signal"]);
  if (!Array.isArray(requests))
    throw new TypeError(`${what}: requests must be an array of { prompt, continuation }, got ${show(requests)}`);
  const { vocabSize } = model.config;
  const owner = { name: "model" as const, isLive };
  const encoded: Array<{ prompt: number[]; continuation: number[] }> = [];
  for (const [i, r] of requests.entries()) {
    signal?.throwIfAborted();
    const label = requests.length === 1 ? what : `${what}: requests[${i}]`;
    if (typeof r !== "object" || r === null) throw new TypeError(`${label} must be { prompt, continuation }, got ${show(r)}`);
    const prompt = await whileLive(
      owner,
      promptIdsAsync(model.optionalTokenizer, r.prompt, vocabSize, `${label}: prompt`),
      "scoring",
      signal,
    );
    const continuation = await whileLive(owner, continuationIds(model, r.continuation, `${label}: continuation`), "scoring", signal);
    checkPromptFits(prompt, 0, session.maxContext, `${label}: the prompt`);
    if (continuation.length === 0) throw new RangeError(`${label}: the continuation encodes to no tokens`);
    if (prompt.length + continuation.length > session.maxContext)
      throw new RangeError(
        `${label}: the prompt and the continuation have ${prompt.length} + ${continuation.length} tokens: more than maxContext ${session.maxContext}. ` +
          `Shorten them or ask for a larger maxContext (an option of ${what})`,
      );
    encoded.push({ prompt, continuation });
  }
  // Between requests and between prefill steps (a chunk through one layer, the finest there is):
  // the event loop runs, and an abort or the model disposed ends the scoring there.
  const pause = async () => {
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (!isLive()) throw disposedDuring("model", "scoring");
    signal?.throwIfAborted();
  };
  // Work 1 per step: advance() runs one unit, a chunk through one layer.
  const step = 1;
  const results: ScoreResult[] = [];
  for (const { prompt, continuation } of encoded) {
    if (results.length) await pause();
    signal?.throwIfAborted();
    const sequence = new GenerationSequence(model.decoder, session.hybrid);
    try {
      sequence.startPrefill(prompt, session.prefillChunk);
      let prefilled = sequence.continuePrefill(step);
      while (!prefilled.logits) {
        await pause();
        prefilled = sequence.continuePrefill(step);
      }
      const last = prefilled.logits;
      // The continuation's later tokens are scored where the logits are (on CUDA, on the device).
      const scoreRun = async (from: number, to: number) => {
        const run = model.decoder.startPrefill(sequence.seq, continuation.slice(from, to), {
          targets: continuation.slice(from + 1, to + 1),
          chunkSize: session.prefillChunk,
        });
        // Left unfinished (abort, model disposed), the run is abandoned with its temporaries when
        // the sequence is disposed below.
        for (run.advance(step); !run.done; run.advance(step)) await pause();
        return run.finish();
      };
      // A lazy-layer choice that waits for the sequence to grow past sink + window is made where
      // generation makes it, so that the tokens after it are scored in the layers generation uses.
      const at = sequence.pendingChoiceAt;
      const cut = at !== undefined && at < prompt.length + continuation.length ? at - prompt.length : continuation.length;
      let rest = [...(await scoreRun(0, cut))];
      if (cut < continuation.length) {
        sequence.chooseIfDue();
        rest = [...rest, ...(await scoreRun(cut, continuation.length))];
      }
      const logprobs = [logSoftmaxAt(last, 0, vocabSize, continuation[0]), ...rest];
      const sum = logprobs.reduce((a, b) => a + b, 0);
      results.push({ tokens: continuation, logprobs, sum, perplexity: Math.exp(-sum / logprobs.length), hybrid: sequence.hybridState });
    } finally {
      sequence.dispose();
    }
  }
  return results;
}

/** A continuation's token ids: text without special tokens (the prompt has them), ids checked as they are. */
async function continuationIds(model: GenerationModel, continuation: Continuation, label: string): Promise<number[]> {
  if (typeof continuation === "string") {
    if (!model.optionalTokenizer) throw noTokenizerError(label);
    const ids = await model.optionalTokenizer.encodeAsync(continuation, { addSpecialTokens: false });
    return checkEncodedIds(ids, model.config.vocabSize, label);
  }
  if (!Array.isArray(continuation) && !(continuation instanceof Int32Array))
    throw new TypeError(`${label} must be text or token ids (a number[] or Int32Array), got ${show(continuation)}`);
  return Array.from(checkTokenIds(continuation, model.config.vocabSize, label));
}

/** log softmax(logits[offset, offset + vocab))[token] in float64, shifted by the row's maximum so exp cannot overflow. */
function logSoftmaxAt(logits: Float32Array, offset: number, vocab: number, token: number): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let j = offset; j < offset + vocab; j++) if (logits[j] > max) max = logits[j];
  let sum = 0;
  for (let j = offset; j < offset + vocab; j++) sum += Math.exp(logits[j] - max);
  return logits[offset + token] - max - Math.log(sum);
}
