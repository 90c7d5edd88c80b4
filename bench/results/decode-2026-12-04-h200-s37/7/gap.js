// How long the GPU waits on the host between batch-1 graph steps: the same decode steps timed
// one by one as greedy generation runs them (each reads its token back, then the host fills and
// launches the next) and queued back to back (no read-back until the last, so the host's fill
// and launch overlap the GPU's work). The difference per step is what launching step t + 1
// before reading step t's token could hide at most. Run from the repository root:
//   node bench/results/decode-2026-12-04-h200-s37/7/gap.js MODEL_DIR
const { loadModel } = require(`${process.cwd()}/dist/lib`);
const steps = 48;
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
(async () => {
  const model = await loadModel(process.argv[2], { device: "cuda:0", kvCacheBytes: 8 * 2 ** 30 });
  const dec = model.decoder;
  const vocab = model.config.vocabSize;
  const rand = () => 1 + Math.floor(Math.random() * (vocab - 1));
  for (const context of [4096, 16384]) {
    const seq = dec.createSequence();
    dec.prefill(seq, Array.from({ length: context }, rand));
    let last = rand();
    for (let i = 0; i < 8; i++) last = dec.step([seq], [last], "argmax")[0];
    const oneByOne = [],
      queued = [];
    for (let round = 0; round < 4; round++) {
      let t0 = performance.now();
      for (let i = 0; i < steps; i++) last = dec.step([seq], [last], "argmax")[0];
      oneByOne.push((performance.now() - t0) / steps);
      // The ids are not the model's tokens here (each step is fed a random one): only the time counts.
      t0 = performance.now();
      for (let i = 0; i < steps - 1; i++) dec.step([seq], [rand()], "none");
      last = dec.step([seq], [rand()], "argmax")[0];
      queued.push((performance.now() - t0) / steps);
    }
    const a = median(oneByOne),
      b = median(queued);
    console.log(
      `context ${context}: one by one ${oneByOne.map((x) => x.toFixed(3)).join(" ")} ms, queued ${queued.map((x) => x.toFixed(3)).join(" ")} ms; ` +
        `median ${a.toFixed(3)} vs ${b.toFixed(3)} ms a step: the host's gap ${(1000 * (a - b)).toFixed(0)} us (${((100 * (a - b)) / a).toFixed(1)}%)`,
    );
    seq.dispose();
  }
  await model.dispose();
})();
