// `node dist/bench/prefill.js MODEL_DIR [--contexts 4096,16384] [--chunks 4096,16384] [--prompts 8] [--out prefill.json]`:
// prefill throughput of one prompt at a time on CUDA, per context and prefill chunk size (by
// default the model's default chunk, model.decoder.prefillChunk), on
// random token ids (fresh each run). Each point is the median of --prompts prefills after one
// warm-up prefill. The model-decode benchmark measures prefill too, at the default chunk only;
// this one isolates it, for chunk-size comparisons and for profiling a prefill (run it under
// Nsight Systems to compare the kernels' time with the wall time).
import * as fs from "node:fs";
import { loadModel } from "../lib";
import { readArgs } from "./args";
import { oneSequenceKvBytes } from "./kv-pool";

const usage = "node dist/bench/prefill.js MODEL_DIR [--contexts 4096,16384] [--chunks 4096,16384] [--prompts 8] [--out FILE]";
const args = readArgs(usage, { contexts: "4096,16384", chunks: undefined, prompts: "8", out: undefined }, { positional: true });
const modelDir =
  args.positional ??
  (() => {
    throw new Error(`usage: ${usage}`);
  })();
const contexts = args.numbers("contexts", { integer: true, min: 1 });
const chunksAsked = args.optional("chunks") === undefined ? undefined : args.numbers("chunks", { integer: true, min: 1 });
const prompts = args.number("prompts", { integer: true, min: 1 });
const outFile = args.optional("out");

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const longest = Math.max(...contexts);
  const pageSize = 16;
  const kvCacheBytes = oneSequenceKvBytes(modelDir, longest, pageSize);
  const model = await loadModel(modelDir, { device: "cuda:0", kvCacheBytes, pageSize });
  const dec = model.decoder;
  const chunks = chunksAsked ?? [dec.prefillChunk];
  const vocab = model.config.vocabSize;
  const randomPrompt = (n: number) => Array.from({ length: n }, () => Math.floor(Math.random() * vocab));
  const results: Array<{ context: number; chunk: number; ms: number; tokPerS: number }> = [];
  try {
    for (const context of contexts)
      for (const chunk of chunks) {
        const ms: number[] = [];
        for (let i = 0; i <= prompts; i++) {
          const seq = dec.createSequence();
          try {
            const t0 = performance.now();
            dec.prefill(seq, randomPrompt(context), { chunkSize: chunk });
            if (i > 0) ms.push(performance.now() - t0);
          } finally {
            seq.dispose();
          }
        }
        const m = median(ms);
        results.push({ context, chunk, ms: m, tokPerS: (context / m) * 1000 });
        const label = chunk === dec.prefillChunk ? `${chunk} (default)` : `${chunk}`;
        console.log(`context ${context} chunk ${label}: median ${m.toFixed(1)} ms (${((context / m) * 1000).toFixed(0)} tok/s)`);
      }
  } finally {
    model.dispose();
  }
  if (outFile) fs.writeFileSync(outFile, `${JSON.stringify({ model: modelDir, prompts, results }, null, 2)}\n`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
