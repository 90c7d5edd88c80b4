// Session 42: a prompt prefilled through Session.generate (a unit a turn) against the decoder's own
// prefill (one call), at the default chunk, the same model, fresh random ids each time, in turns.
const { loadModel } = require("../dist/lib");
(async () => {
  const model = await loadModel(process.argv[2], { device: "cuda:0" });
  const vocab = model.config.vocabSize;
  const random = (n) => Array.from({ length: n }, () => Math.floor(Math.random() * vocab));
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  for (const ctx of [4096, 16384]) {
    const viaSession = [];
    const viaDecoder = [];
    for (let r = 0; r < 6; r++) {
      const s = model.createSession({ maxContext: ctx + 8 });
      let t = performance.now();
      for await (const _ of s.generate(random(ctx), { maxNewTokens: 0 }));
      if (r > 0) viaSession.push(performance.now() - t);
      s.dispose();
      const seq = model.decoder.createSequence();
      t = performance.now();
      model.decoder.prefill(seq, random(ctx));
      if (r > 0) viaDecoder.push(performance.now() - t);
      seq.dispose();
    }
    console.log(`context ${ctx}: Session.generate prefill median ${median(viaSession).toFixed(1)} ms (${viaSession.map((x) => x.toFixed(0)).join(" ")})` +
      `; decoder.prefill ${median(viaDecoder).toFixed(1)} ms (${viaDecoder.map((x) => x.toFixed(0)).join(" ")})`);
  }
  await model.dispose();
})().catch((e) => { console.error(e); process.exit(1); });
