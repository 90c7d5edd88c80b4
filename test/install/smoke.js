// Run from a project that installed lighttransfer: lists the devices, loads the tiny Llama
// fixture and generates 8 tokens in full mode and in hybrid auto mode (2 of 3 layers must
// become lazy). Prints one JSON line. On the CPU the full-mode tokens must equal transformers'
// greedy tokens (as in test/model.test.ts); on CUDA, whose bf16 logits differ from transformers'
// by a few hundredths, only up to the first step whose top-2 margin is under 0.1 (beyond it a
// flip is legitimate; test/gpu/model.test.ts measures the error and checks every step).
//   node smoke.js <fixture dir> [expected addon path substring] [device: cpu | cuda:0]

const fs = require("node:fs");
const path = require("node:path");
const lt = require("lighttransfer");

const [fixture, expectedAddon, device] = process.argv.slice(2);
const cudaMargin = 0.1;

function check(ok, message) {
  if (!ok) {
    console.error(`smoke: ${message}`);
    process.exit(1);
  }
}

async function tokensOf(stream) {
  const tokens = [];
  for await (const chunk of stream) tokens.push(...chunk.tokens);
  return tokens;
}

async function main() {
  const devices = lt.devices();
  const addon = lt.addonPath();
  check(
    devices.some((d) => d.id === "cpu"),
    `devices() has no cpu entry: ${JSON.stringify(devices)}`,
  );
  if (expectedAddon) check(addon?.includes(expectedAddon), `the addon came from ${addon}, expected ${expectedAddon}`);

  const reference = JSON.parse(fs.readFileSync(path.join(fixture, "reference.json"), "utf8"));
  const { prompt, greedy, greedyMargins } = reference.cases[0];
  const model = await lt.loadModel(fixture, device ? { device } : {});
  try {
    const full = await tokensOf(model.generate(prompt, { maxNewTokens: 8, stopAtEos: false }));
    const small = greedyMargins.findIndex((margin) => margin < cudaMargin);
    const exact = model.device === "cpu" || small < 0 ? 8 : Math.min(8, small);
    check(
      full.length === 8 && JSON.stringify(full.slice(0, exact)) === JSON.stringify(greedy.slice(0, exact)),
      `full mode on ${model.device} gave ${JSON.stringify(full)}; transformers' greedy tokens are ${JSON.stringify(greedy.slice(0, 8))}` +
        ` and the first ${exact} must match`,
    );

    const session = model.createSession({ hybrid: { mode: "auto", fullLayers: 1, sink: 2, window: 4, lastQueries: 2 } });
    const hybrid = await tokensOf(session.generate(prompt, { maxNewTokens: 8, stopAtEos: false }));
    const state = session.stats.hybrid;
    check(hybrid.length === 8, `hybrid auto mode gave ${hybrid.length} tokens, not 8`);
    check(state && !state.pending && state.lazyLayers.length === 2, `hybrid auto mode did not cut 2 of 3 layers: ${JSON.stringify(state)}`);
    console.log(
      JSON.stringify({
        addon,
        device: model.device,
        cuda: lt.cudaStatus(),
        devices: devices.map((d) => d.id),
        full,
        matchedReference: exact,
        hybrid,
        lazyLayers: state.lazyLayers,
      }),
    );
  } finally {
    await model.dispose();
  }
}

main().catch((err) => {
  console.error(`smoke: ${err.stack}`);
  process.exit(1);
});
