// Prompts of random tokens prefilled on CUDA, each timed on the wall clock up to its logits on the
// host, then a few greedy decode steps of the last one replayed from a CUDA graph: the workload
// tools/gpu/profile_decode_step.sh (one prefill, a few steps) and profile_prefill_kernels.sh
// (several prefills, no step) hand to Nsight Compute. Every prefill and every step starts with
// the embedding kernel, so the profile's last step, or with no steps its last prefill, is
// everything from the last embedding launch on; an earlier prefill warms up cuBLASLt's choices
// and the allocator. The KV pool holds one sequence in 16-bit K/V (the CUDA activations), sized
// as bench/prefill.ts sizes it.
//   node tools/gpu/decode_steps.js MODEL_DIR [CONTEXT] [STEPS] [PREFILLS]
// Run from the repository root after `npm run build` (it loads dist/lib).
const fs = require("node:fs");
const path = require("node:path");
const { loadModel } = require("../../dist/lib");

async function main() {
  const [dir, contextArg = "4096", stepsArg = "3", prefillsArg = "1"] = process.argv.slice(2);
  if (!dir) throw new Error("usage: node tools/gpu/decode_steps.js MODEL_DIR [CONTEXT] [STEPS] [PREFILLS]");
  const [context, steps, prefills] = [contextArg, stepsArg, prefillsArg].map(Number);
  const config = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
  const headDim = config.head_dim ?? config.hidden_size / config.num_attention_heads;
  const pageSize = 16;
  const kvCacheBytes =
    config.num_hidden_layers * Math.ceil((context + steps) / pageSize) * 2 * pageSize * config.num_key_value_heads * headDim * 2;
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
