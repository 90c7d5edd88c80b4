// The Hugging Face reference fixtures made by tools/make_fixtures.py.
import * as fs from "node:fs";
import * as path from "node:path";
import type { Decoder } from "../../lib/model/decoder";
import type { Sequence } from "../../lib/model/sequence";

export const fixtureRoot = path.join(__dirname, "..", "fixtures", "models");
export const fixtureModels = ["llama-tiny", "mistral-tiny", "qwen2-tiny"];

export interface ReferenceCase {
  prompt: string;
  ids: number[];
  logitsFile: string;
  logitsShape: [number, number];
  greedy: number[];
  greedyMargins: number[];
  greedyText: string;
}

export interface Reference {
  model: string;
  architecture: string;
  dtype: string;
  transformers: string;
  chatTemplateInput: Array<{ role: string; content: string }>;
  chatTemplateOutput: string;
  cases: ReferenceCase[];
}

export function readReference(model: string): Reference {
  return JSON.parse(fs.readFileSync(path.join(fixtureRoot, model, "reference.json"), "utf8"));
}

export function readLogits(model: string, c: ReferenceCase): Float32Array {
  const buf = fs.readFileSync(path.join(fixtureRoot, model, c.logitsFile));
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

/** A fresh sequence per prompt with the prompt prefilled (then `after`, if given, on each). */
export function prefilledSequences(decoder: Decoder, prompts: number[][], after?: (seq: Sequence, index: number) => void): Sequence[] {
  return prompts.map((ids, i) => {
    const seq = decoder.createSequence();
    decoder.prefill(seq, ids);
    after?.(seq, i);
    return seq;
  });
}
