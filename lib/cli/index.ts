#!/usr/bin/env node
// The `lighttransfer` command: generate text, list devices.
import { Command, InvalidArgumentError, Option } from "commander";
import { SingleBar } from "cli-progress";
import { cudaStatus, devices, loadModel } from "../index";
import type { DeviceName } from "../tensor";

function number(kind: "int" | "float") {
  return (value: string) => {
    const n = kind === "int" ? Number.parseInt(value, 10) : Number.parseFloat(value);
    if (!Number.isFinite(n) || (kind === "int" && String(n) !== value.trim())) throw new InvalidArgumentError(`not a${kind === "int" ? "n integer" : " number"}: ${value}`);
    return n;
  };
}

const program = new Command("lighttransfer").description("Hybrid long-context LLM inference (LightTransfer) for Node.js");

program
  .command("generate")
  .description("stream a continuation of a prompt from a Hugging Face model directory")
  .requiredOption("-m, --model <dir>", "model directory (config.json, *.safetensors, tokenizer.json)")
  .requiredOption("-p, --prompt <text>", "the prompt")
  .option("--chat", "wrap the prompt as a user message with the model's chat template")
  .addOption(new Option("-d, --device <device>", "cpu, cuda or cuda:N (default: cuda if available)"))
  .option("-n, --max-new-tokens <n>", "tokens to generate", number("int"), 256)
  .option("-t, --temperature <t>", "0 = greedy", number("float"), 0)
  .option("--top-k <k>", "sample from the k most likely tokens (0 = all)", number("int"), 0)
  .option("--top-p <p>", "nucleus sampling mass", number("float"), 1)
  .option("--repetition-penalty <r>", "> 1 discourages repeats", number("float"), 1)
  .option("--seed <seed>", "sampler seed", number("int"))
  .option("--stop <text...>", "stop strings")
  .option("--max-context <n>", "largest context the session may hold", number("int"))
  .option("--stats", "print throughput and KV-cache statistics at the end")
  .action(async (o) => {
    const bar = new SingleBar({ format: "loading {bar} {percentage}% | {value}/{total} MiB", hideCursor: true, stream: process.stderr });
    let started = false;
    const controller = new AbortController();
    process.once("SIGINT", () => controller.abort(new Error("interrupted")));
    const model = await loadModel(o.model, {
      device: o.device as DeviceName | undefined,
      signal: controller.signal,
      onProgress: (p) => {
        const mib = (b: number) => Math.round(b / 2 ** 20);
        if (!started) bar.start(mib(p.totalBytes), 0);
        started = true;
        bar.update(mib(p.loadedBytes));
      },
    }).finally(() => started && bar.stop());
    try {
      const session = model.createSession({ maxContext: o.maxContext });
      const prompt = o.chat ? [{ role: "user", content: o.prompt }] : o.prompt;
      for await (const chunk of session.generate(prompt, {
        maxNewTokens: o.maxNewTokens, temperature: o.temperature, topK: o.topK, topP: o.topP,
        repetitionPenalty: o.repetitionPenalty, seed: o.seed, stop: o.stop, signal: controller.signal,
      })) process.stdout.write(chunk.text);
      process.stdout.write("\n");
      if (o.stats) {
        const s = session.stats;
        process.stderr.write(
          `prompt ${s.promptTokens} tok at ${s.prefillTokensPerSecond.toFixed(1)} tok/s, generated ${s.generatedTokens} tok at ` +
            `${s.decodeTokensPerSecond.toFixed(1)} tok/s, KV ${(s.kvBytes / 2 ** 20).toFixed(2)} MiB on ${model.device}\n`,
        );
      }
    } finally {
      await model.dispose();
    }
  });

program
  .command("devices")
  .description("list the CPU and CUDA devices, and why CUDA is unavailable if it is")
  .action(() => {
    for (const d of devices()) {
      const gib = (d.totalMemory / 2 ** 30).toFixed(1);
      console.log(d.type === "cuda" ? `${d.id}  ${d.name}  ${gib} GiB  compute ${d.computeCapability}` : `cpu     ${d.name}  ${gib} GiB  ${d.threads} threads`);
    }
    const cuda = cudaStatus();
    if (!cuda.available) console.log(`CUDA unavailable: ${cuda.reason}`);
  });

program.parseAsync().catch((err: Error) => {
  process.stderr.write(`lighttransfer: ${err.message}\n`);
  process.exit(1);
});
