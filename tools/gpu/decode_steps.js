// Prompts of random tokens prefilled on CUDA, each timed on the wall clock up to its logits on the
// host, then a few greedy decode steps of the last one replayed from a CUDA graph: the workload
// tools/gpu/profile_decode_step.sh (one prefill, a few steps) and profile_prefill_kernels.sh
// (several prefills, no step) hand to Nsight Compute. Every prefill and every step starts with
// the embedding kernel, so the profile's last step, or with no steps its last prefill, is
// everything from the last embedding launch on; an earlier prefill warms up cuBLASLt's choices
// and the allocator. The KV pool holds one sequence (oneSequenceKvBytes, as bench/prefill.ts sizes
// it).
//   node tools/gpu/decode_steps.js MODEL_DIR [CONTEXT] [STEPS] [PREFILLS]
// Run from the repository root after `npm run build` (it loads dist/lib).
const { loadModel } = require("../../dist/lib");
const { oneSequenceKvBytes } = require("../../dist/bench/kv-pool");

async function main() {
  const [dir, contextArg = "4096", stepsArg = "3", prefillsArg = "1"] = process.argv.slice(2);
  if (!dir) throw new Error("usage: node tools/gpu/decode_steps.js MODEL_DIR [CONTEXT] [STEPS] [PREFILLS]");
  const [context, steps, prefills] = [contextArg, stepsArg, prefillsArg].map(Number);
  const pageSize = 16;
  const kvCacheBytes = oneSequenceKvBytes(dir, context + steps, pageSize);
  const model = await loadModel(dir, { device: "cuda:0", kvCacheBytes, pageSize, tokenizer: false });
  try {
    const vocab = model.config.vocabSize;
    const random = () => Math.floor(Math.random() * vocab);
    for (let i = 1; i <= prefills; i++) {
      const seq = model.decoder.createSequence();
      try {
        const ids = Array.from({ length: context }, random);
        const start = process.hrtime.bigint();
        model.decoder.prefill(seq, ids);
        console.log(`prefill ${i}: ${context} tokens in ${(Number(process.hrtime.bigint() - start) / 1e6).toFixed(1)} ms`);
        if (i < prefills || steps === 0) continue;
        let next = [random()];
        for (let step = 0; step < steps; step++) next = Array.from(model.decoder.step([seq], next, "argmax"));
        console.log(`${steps} decode steps, last token ${next[0]}`);
      } finally {
        seq.dispose();
      }
    }
  } finally {
    await model.dispose();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
