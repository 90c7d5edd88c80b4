// Run from the repository root after `npm run build:ts`: node bench/results/serve-cpu-2026-12-05-s42/health-during-prefill.js
// GET /health polled every 20 ms while one 4000-token prompt is prefilled, old defaults (16384, 512) and the CPU defaults in turns.
const { loadModel, createServer } = require("../../../dist/lib");
(async () => {
  const model = await loadModel(require("node:path").join(__dirname, "..", "..", "..", "models", "demo"), { device: "cpu" });
  const ids = Array.from({ length: 4000 }, () => 10 + Math.floor(Math.random() * 4000));
  for (const [chunk, stepTokens] of [[16384, 512], [undefined, undefined], [16384, 512], [undefined, undefined]]) {
    const app = await createServer(model, { modelName: "demo", ...(chunk && { prefillChunk: chunk }), ...(stepTokens && { stepTokens }) });
    const url = await app.listen({ port: 0, host: "127.0.0.1" });
    const t0 = performance.now();
    const long = fetch(`${url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "demo", prompt: ids, max_tokens: 1 }) }).then((r) => r.json()).then(() => performance.now() - t0);
    let worst = 0, polls = 0, done = false;
    long.then(() => (done = true));
    while (!done) {
      const t = performance.now();
      await fetch(`${url}/health`);
      worst = Math.max(worst, performance.now() - t); polls++;
      await new Promise((r) => setTimeout(r, 20));
    }
    console.log(`prefillChunk ${chunk ?? "default"} stepTokens ${stepTokens ?? "default"}: long prompt ${(await long).toFixed(0)} ms, /health worst ${worst.toFixed(0)} ms over ${polls} polls`);
    await app.close();
  }
  await model.dispose();
})();
