// Prefills of one prompt of random tokens on CUDA, each timed on the wall clock up to its logits on
// the host: the workload tools/gpu/profile_prefill_kernels.sh hands to Nsight Compute. Every
// prefill starts with the embedding kernel, so the profile's last prefill is everything from the
// last embedding launch on; the first prefill warms up cuBLASLt's choices and the allocator.
//   node tools/gpu/prefill_once.js MODEL_DIR [TOKENS] [PREFILLS]
// Run from the repository root after `npm run build` (it loads dist/lib).
const { loadModel } = require("../../dist/lib");

async function main() {
  const [dir, tokensArg = "4096", prefillsArg = "3"] = process.argv.slice(2);
  if (!dir) throw new Error("usage: node tools/gpu/prefill_once.js MODEL_DIR [TOKENS] [PREFILLS]");
  const tokens = Number(tokensArg);
  const model = await loadModel(dir, { device: "cuda:0", kvCacheBytes: 2 * tokens * 2 ** 17, tokenizer: false });
  try {
    const vocab = model.config.vocabSize;
    const random = () => Math.floor(Math.random() * vocab);
    for (let i = 0; i < Number(prefillsArg); i++) {
      const seq = model.decoder.createSequence();
      try {
        const ids = Array.from({ length: tokens }, random);
        const start = process.hrtime.bigint();
        model.decoder.prefill(seq, ids);
        console.log(`prefill ${i + 1}: ${tokens} tokens in ${(Number(process.hrtime.bigint() - start) / 1e6).toFixed(1)} ms`);
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
