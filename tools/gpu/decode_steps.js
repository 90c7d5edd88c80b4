// One 4K-context sequence of the given checkpoint prefilled on CUDA, then a few greedy decode steps
// replayed from a CUDA graph: the workload tools/gpu/profile_decode_step.sh hands to Nsight
// Compute. Every step starts with the embedding kernel, so the profile's last step is everything
// from the last embedding launch on.
//   node tools/gpu/decode_steps.js MODEL_DIR [CONTEXT] [STEPS]
// Run from the repository root after `npm run build` (it loads dist/lib).
const { loadModel } = require("../../dist/lib");

async function main() {
  const [dir, contextArg = "4096", stepsArg = "3"] = process.argv.slice(2);
  if (!dir) throw new Error("usage: node tools/gpu/decode_steps.js MODEL_DIR [CONTEXT] [STEPS]");
  const model = await loadModel(dir, { device: "cuda:0", kvCacheBytes: 2 ** 30, tokenizer: false });
  try {
    const vocab = model.config.vocabSize;
    const random = () => Math.floor(Math.random() * vocab);
    const seq = model.decoder.createSequence();
    try {
      model.decoder.prefill(seq, Array.from({ length: Number(contextArg) }, random));
      let ids = [random()];
      for (let step = 0; step < Number(stepsArg); step++) ids = Array.from(model.decoder.step([seq], ids, "argmax"));
      console.log(`prefilled ${contextArg} tokens, ${stepsArg} decode steps, last token ${ids[0]}`);
    } finally {
      seq.dispose();
    }
  } finally {
    await model.dispose();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
