// `lighttransfer serve` in a child process (from dist/, which `npm test` builds first): it listens,
// answers an OpenAI completion with what the library generates, and stops cleanly on Ctrl-C.
import { spawn } from "node:child_process";
import * as path from "node:path";
import { loadModel } from "../lib";
import { fixtureRoot } from "./helpers/fixtures";
import { Random } from "./helpers/reference";

const rng = new Random();
const cli = path.join(__dirname, "..", "dist", "lib", "cli", "index.js");
const modelDir = path.join(fixtureRoot, "llama-tiny");

test(`seed ${rng.seed}: serve answers a completion as the library generates it, and exits 0 on SIGINT`, async () => {
  const ids = Array.from({ length: rng.int(3, 20) }, () => rng.int(2, 383));
  const maxTokens = rng.int(1, 12);
  const model = await loadModel(modelDir, { device: "cpu", kvCacheBytes: 2 ** 20 });
  let expected = "";
  try {
    for await (const chunk of model.generate(ids, { maxNewTokens: maxTokens })) expected += chunk.text;
  } finally {
    await model.dispose();
  }
  const child = spawn(
    process.execPath,
    [cli, "serve", "-m", modelDir, "-d", "cpu", "--port", "0", "--kv-memory", "1MiB", "--model-name", "tiny"],
    {
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  try {
    let stderr = "";
    const url = await new Promise<string>((resolve, reject) => {
      child.stderr.on("data", (data) => {
        stderr += data;
        const m = /serving .* on (http:\/\/\S+)/.exec(stderr);
        if (m) resolve(m[1]);
      });
      child.on("exit", (code) => reject(new Error(`serve exited with ${code} before listening: ${stderr}`)));
    });
    const res = await fetch(`${url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "tiny", prompt: ids, max_tokens: maxTokens, temperature: 0 }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { choices: Array<{ text: string }> };
    expect(body.choices[0].text).toBe(expected);
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    child.kill("SIGINT");
    expect(await exited).toBe(0);
  } finally {
    if (child.exitCode === null) child.kill("SIGKILL");
  }
});
