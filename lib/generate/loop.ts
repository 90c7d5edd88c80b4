// The generation loop, for one sequence or many: every prompt prefilled, then one decode step at
// a time for all the sequences still going, each choosing its next token, until a stop rule ends
// it (EOS, a stop string, maxNewTokens, maxContext). Session.generate runs it for one sequence,
// generateBatch for many; an AbortSignal, or the sequences' owner disposed, ends it between steps.
import type { ModelConfig } from "../checkpoint/config";
import type { Tokenizer } from "../checkpoint/tokenizer";
import type { Decoder } from "../model/decoder";
import { describeLogprobs, type LogprobIds, rowLogprobs } from "./logprobs";
import type { FinishReason, GenerateChunk, GenerateSettings } from "./options";
import { Sampler } from "./sampling";
import type { GenerationSequence } from "./sequence";
import { nextTokens, nextTokensWithLogprobs } from "./step";
import { TextStream } from "./text-stream";

/** What generation needs of a loaded model (lib/api's Model has it). */
export interface GenerationModel {
  readonly config: ModelConfig;
  /** Undefined when the model was loaded without one: chunks then carry token ids and empty text. */
  readonly optionalTokenizer: Tokenizer | undefined;
  readonly decoder: Decoder;
}

/** Time and tokens a generation spent, added up across generations (a session's stats). */
export interface GenerationCounters {
  promptTokens: number;
  generatedTokens: number;
  prefillSeconds: number;
  decodeSeconds: number;
}

export interface LoopOptions extends GenerateSettings {
  maxContext: number;
  prefillChunk: number;
  /** Who owns the sequences, and whether it is still there: checked after every wait. */
  owner: { name: "session" | "model"; isLive(): boolean };
  /** The loop releases each sequence when it finishes (or the loop fails); a session keeps its own. */
  releaseSequences: boolean;
  counters?: GenerationCounters;
}

/** A prompt to append to a sequence and continue. */
export interface LoopPrompt {
  sequence: GenerationSequence;
  ids: readonly number[];
}

/** A chunk of prompt `index`'s continuation. */
export interface LoopChunk {
  index: number;
  chunk: GenerateChunk;
}

/** A sequence still generating. */
interface Running {
  index: number;
  sequence: GenerationSequence;
  sampler: Sampler;
  stream: TextStream;
  /** Its tokens so far, prompt included (for a repetition penalty). */
  seen: number[];
  generated: number;
  /** The prefill's logits, from which the first token is chosen ... */
  logits: Float32Array;
  /** ... and the next token once a decode step has chosen it, ... */
  chosen?: number;
  /** ... with its logprobs when they were asked for. */
  chosenLogprobs?: LogprobIds;
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** The error a generation ends with when the owner of its sequences is disposed under it. */
function disposedDuringGeneration(owner: "session" | "model"): Error {
  const err = new Error(`this ${owner} was disposed during generation: the generation stopped and its KV pages were released`);
  err.name = "AbortError";
  return err;
}

/**
 * Generates for every prompt, yielding each sequence's chunks in order: one per token, the last
 * with its finishReason. Prompt i's sampler is seeded with sampling.seed + i. With
 * `releaseSequences` the sequences are released as they finish, and all of them when the loop
 * fails or is left; otherwise they stay with their owner, each holding its prompt and what it
 * generated.
 * @example
 * for await (const { index, chunk } of generationLoop(model, [{ sequence, ids }], options)) process.stdout.write(chunk.text);
 */
export async function* generationLoop(model: GenerationModel, prompts: readonly LoopPrompt[], o: LoopOptions): AsyncGenerator<LoopChunk> {
  const eos = new Set(o.stopAtEos ? model.config.eosTokenIds : []);
  const checkLive = () => {
    if (!o.owner.isLive()) throw disposedDuringGeneration(o.owner.name);
  };
  let running: Running[] = [];
  try {
    for (const [index, { sequence, ids }] of prompts.entries()) {
      o.signal?.throwIfAborted();
      const t0 = performance.now();
      const logits = sequence.prefill(ids, o.prefillChunk);
      if (o.counters) {
        o.counters.prefillSeconds += (performance.now() - t0) / 1000;
        o.counters.promptTokens += ids.length;
      }
      const seed = o.sampling.seed === undefined ? undefined : o.sampling.seed + index;
      running.push({
        index,
        sequence,
        sampler: new Sampler({ ...o.sampling, seed }),
        stream: new TextStream(model.optionalTokenizer, o.stop),
        seen: [...ids],
        generated: 0,
        logits,
      });
      await yieldToEventLoop();
      checkLive();
    }
    for (;;) {
      const going: Running[] = [];
      for (const r of running) {
        const chunk = nextChunk(r, o, eos, model.optionalTokenizer);
        yield { index: r.index, chunk };
        if (!chunk.finishReason) going.push(r);
        else if (o.releaseSequences) r.sequence.dispose();
      }
      running = going;
      if (!running.length) return;
      await yieldToEventLoop();
      checkLive();
      o.signal?.throwIfAborted();
      const t0 = performance.now();
      const seqs = running.map((r) => r.sequence.seq);
      const last = running.map((r) => r.seen[r.seen.length - 1]);
      const samplers = running.map((r) => r.sampler);
      const seen = running.map((r) => r.seen);
      if (o.logprobs === undefined) {
        const tokens = nextTokens(model.decoder, seqs, last, samplers, seen);
        running.forEach((r, b) => (r.chosen = tokens[b]));
      } else {
        const { tokens, logprobs } = nextTokensWithLogprobs(model.decoder, seqs, last, samplers, seen, o.logprobs);
        running.forEach((r, b) => {
          r.chosen = tokens[b];
          r.chosenLogprobs = logprobs[b];
        });
      }
      if (o.counters) {
        o.counters.decodeSeconds += (performance.now() - t0) / 1000;
        o.counters.generatedTokens += running.length;
      }
    }
  } finally {
    if (o.releaseSequences) for (const { sequence } of prompts) sequence.dispose();
  }
}

/**
 * Sequence r's next token and the text it adds (with its logprobs if asked for), and why the
 * sequence ends with it if it does: the stop rules, in order — no tokens asked for, EOS, a stop
 * string, maxNewTokens, maxContext.
 */
function nextChunk(r: Running, o: LoopOptions, eos: ReadonlySet<number>, tokenizer: Tokenizer | undefined): GenerateChunk {
  if (o.maxNewTokens === 0) return { text: "", tokens: [], finishReason: "length" };
  const next = r.chosen ?? r.sampler.next(r.logits, r.seen);
  const chunk = chunkFor(r, o, eos, next);
  if (o.logprobs !== undefined) chunk.logprobs = [describeLogprobs(r.chosenLogprobs ?? rowLogprobs(r.logits, next, o.logprobs), tokenizer)];
  return chunk;
}

/** The chunk of token `next`, appended to r's tokens, after the stop rules. */
function chunkFor(r: Running, o: LoopOptions, eos: ReadonlySet<number>, next: number): GenerateChunk {
  r.seen.push(next);
  r.generated++;
  if (eos.has(next)) return { text: r.stream.flush(), tokens: [next], finishReason: "eos" };
  const { text, stopped } = r.stream.push(next);
  if (stopped) return { text, tokens: [next], finishReason: "stop" };
  const finishReason: FinishReason | undefined =
    r.generated === o.maxNewTokens ? "length" : r.sequence.length + 1 > o.maxContext ? "context" : undefined;
  return finishReason ? { text: text + r.stream.flush(), tokens: [next], finishReason } : { text, tokens: [next] };
}
