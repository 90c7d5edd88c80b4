// A worker thread that ends (terminate(), process.exit()) while one of its async kernels still runs:
// the kernel's promise can no longer be settled, which must not take the process down.
import { spawnSync } from "node:child_process";
import * as path from "node:path";

const dist = path.join(__dirname, "..", "..", "dist", "lib", "index.js");

const workerBody = (end: string) => `
const { Tensor, kernels } = require(${JSON.stringify(dist)});
const random = (n) => Float32Array.from({ length: n }, () => Math.random() * 2 - 1);
const q = Tensor.from(random(4096 * 4 * 64), [4096, 4, 64]);
const k = Tensor.from(random(4096 * 2 * 64), [4096, 2, 64]);
kernels.prefillAttentionAsync({ q, k, v: k });
require("node:worker_threads").parentPort.postMessage("started");
${end}`;

test.each([
  ["terminate() from the main thread", "", "setTimeout(() => w.terminate(), 20)"],
  ["process.exit() in the worker", "setTimeout(() => process.exit(0), 20);", ""],
])("%s while an async kernel runs: the process goes on", (_, inWorker, inMain) => {
  const script = `
const { Worker } = require("node:worker_threads");
const w = new Worker(${JSON.stringify(workerBody(inWorker))}, { eval: true });
w.once("message", () => { ${inMain} });
w.once("exit", () => setTimeout(() => console.log("main thread alive"), 50));`;
  const r = spawnSync(process.execPath, ["-e", script], { encoding: "utf8", timeout: 60_000 });
  expect({ status: r.status, signal: r.signal, stdout: r.stdout.trim(), stderr: r.stderr.slice(-300) }).toEqual({
    status: 0,
    signal: null,
    stdout: "main thread alive",
    stderr: "",
  });
});
