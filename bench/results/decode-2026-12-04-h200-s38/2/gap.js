// The host's gap between batch-1 graph steps, and how much of it launching ahead hides: the same
// decode steps timed read back one by one (each reads its token, then the host fills and launches
// the next), queued back to back (nothing read back until the last: the GPU never waits on the
// host) and launched ahead (Decoder.launchGreedy: step t + 1 queued before step t's token is
// read). Rounds alternate the three. Run from the repository root:
//   node bench/results/decode-2026-12-04-h200-s38/2/gap.js MODEL_DIR
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
      queued = [],
      ahead = [];
    for (let round = 0; round < 4; round++) {
      let t0 = performance.now();
      for (let i = 0; i < steps; i++) last = dec.step([seq], [last], "argmax")[0];
      oneByOne.push((performance.now() - t0) / steps);
      // The ids are not the model's tokens here (each step is fed a random one): only the time counts.
      t0 = performance.now();
      for (let i = 0; i < steps - 1; i++) dec.step([seq], [rand()], "none");
      last = dec.step([seq], [rand()], "argmax")[0];
      queued.push((performance.now() - t0) / steps);
      t0 = performance.now();
      let launched = dec.launchGreedy([seq], [last]);
      for (let i = 1; i < steps; i++) {
        const next = dec.launchGreedy([seq], launched);
        launched.tokens();
        launched = next;
      }
      last = launched.tokens()[0];
      ahead.push((performance.now() - t0) / steps);
    }
    const [a, b, c] = [oneByOne, queued, ahead].map(median);
    const f = (xs) => xs.map((x) => x.toFixed(3)).join(" ");
    console.log(
      `context ${context}: one by one ${f(oneByOne)} ms; queued ${f(queued)} ms; launched ahead ${f(ahead)} ms; ` +
        `medians ${a.toFixed(3)} / ${b.toFixed(3)} / ${c.toFixed(3)}: the gap ${(1000 * (a - b)).toFixed(0)} us, launched ahead hides ${(1000 * (a - c)).toFixed(0)} us of it`,
    );
    seq.dispose();
  }
  console.log(`chained steps ${dec.stats.chainedSteps} of ${dec.stats.graphSteps}`);
  await model.dispose();
})();
