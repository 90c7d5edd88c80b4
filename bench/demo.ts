// `npm run demo`: the LightTransfer story on the trained demo model (models/demo). One long
// document hides a pass key well before its last `window` tokens; the model answers it greedily
// with full attention, with hybrid attention (auto: half the layers full, the lazy half on sink +
// window rings), and with every layer streaming. Each line prints what was measured: the answer,
// whether it is right, the lazy layers and the session's KV cache bytes.
// Options: --seed N (default: a fresh one each run), --context TOKENS, --depth 0..1.
import * as path from "node:path";
import { parseArgs } from "node:util";
import { brownCorpus, cudaStatus, type DeviceName, type HybridOptions, isCorrect, loadModel, makeSample } from "../lib";

const device: DeviceName = cudaStatus().available ? "cuda:0" : "cpu";
const usage = "npm run demo -- [--seed N] [--context TOKENS] [--depth 0..1]";

/** The flags, each refused unless its whole text is a number in range: a typo must not demo something other than asked. */
function readFlags(argv: string[]): { context: number; depth: number; seed: number; help: boolean } {
  let values: { context?: string; depth?: string; seed?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { context: { type: "string" }, depth: { type: "string" }, seed: { type: "string" }, help: { type: "boolean", short: "h" } },
      strict: true,
    }));
  } catch (err) {
    throw new Error(`${(err as Error).message.replace(/\n/g, " ").replace(/\.$/, "")}; usage: ${usage}`);
  }
  const number = (name: string, text: string, ok: (n: number) => boolean, want: string) => {
    const n = text.trim() === "" ? Number.NaN : Number(text);
    if (!ok(n)) throw new Error(`--${name} must be ${want}, got ${JSON.stringify(text)}`);
    return n;
  };
  return {
    context: number(
      "context",
      values.context ?? (device === "cpu" ? "2048" : "4096"),
      (n) => Number.isSafeInteger(n) && n >= 1,
      "a positive whole number of tokens",
    ),
    depth: number("depth", values.depth ?? "0.3", (d) => d >= 0 && d <= 1, "a number in [0, 1] (0: start of the document, 1: its end)"),
    seed: values.seed === undefined ? Math.floor(Math.random() * 1e6) : number("seed", values.seed, Number.isSafeInteger, "an integer"),
    help: values.help ?? false,
  };
}

let flags: ReturnType<typeof readFlags>;
try {
  flags = readFlags(process.argv.slice(2));
} catch (err) {
  fail(err);
}
const { context, depth, seed } = flags;
const shape = { sink: 4, window: 256 };
const modes: Array<{ name: string; hybrid: HybridOptions }> = [
  { name: "full", hybrid: { mode: "off" } },
  { name: "hybrid auto 50%", hybrid: { mode: "auto", fullLayers: 0.5, ...shape } },
  { name: "streaming-all", hybrid: { mode: "streaming-all", ...shape } },
];
// The answer and the `</s>` that ends it, plus room to see what a wrong answer runs on into.
const slackTokens = 4;

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(2)} MiB`;

async function main() {
  const dir = path.join(__dirname, "..", "..", "models", "demo");
  const model = await loadModel(dir, { device });
  try {
    const c = model.config;
    const sample = makeSample(
      model.tokenizer,
      brownCorpus(),
      { task: "passkey", context, depth, seed },
      { chat: false, maxPositions: c.maxPositionEmbeddings, extraTokens: slackTokens },
    );
    const needle = sample.needles.find((n) => n.answering);
    if (!needle) throw new Error("the passkey sample has no answering needle");
    const fromEnd = sample.prompt.length - needle.token;
    console.log(`lighttransfer demo: models/demo (${c.architecture}, ${c.layers} layers, hidden ${c.hiddenSize}) on ${device}`);
    console.log(
      `passkey (seed ${seed}): ${sample.prompt.length}-token prompt of Brown-corpus text; the needle "${needle.text}" starts at token ` +
        `${needle.token} (depth ${needle.depthReached.toFixed(2)}), ${fromEnd} tokens before the question; lazy layers keep ` +
        `the first ${shape.sink} + last ${shape.window} tokens`,
    );
    for (const mode of modes) {
      const session = model.createSession({
        hybrid: mode.hybrid,
        maxContext: sample.prompt.length + sample.answerIds.length + slackTokens,
      });
      try {
        let text = "";
        for await (const chunk of session.generate(sample.prompt, { maxNewTokens: sample.answerIds.length + slackTokens }))
          text += chunk.text;
        const s = session.stats;
        const verdict = isCorrect(text, sample.answer) ? "right" : "wrong";
        const lazy = s.hybrid.lazyLayers.length ? s.hybrid.lazyLayers.join(",") : "none";
        const kv = `${mib(s.kvBytes)} of ${mib(s.kvBytesFull)} (${((100 * s.kvBytes) / s.kvBytesFull).toFixed(0)}%)`;
        console.log(
          `  ${mode.name.padEnd(16)} answer ${JSON.stringify(text.trim()).padEnd(10)} ${verdict}  lazy layers ${lazy.padEnd(15)} KV ${kv}`,
        );
      } finally {
        session.dispose();
      }
    }
    console.log(`expected answer: ${sample.answer}; try other documents with --seed N, --context TOKENS, --depth 0..1`);
  } finally {
    await model.dispose();
  }
}

/** A mistake in the flags (or a context the model cannot take) is one line, as the lighttransfer command prints it. */
function fail(err: unknown): never {
  process.stderr.write(`lighttransfer demo: ${(err as Error).message}\n`);
  process.exit(1);
}

if (flags.help) console.log(`usage: ${usage}`);
else main().catch(fail);
