// An async kernel aborted while it waits for a libuv thread, on the CPU or on CUDA: a child
// process with one thread in libuv's pool, taken by a long prefill, queues a second prefill with
// a signal and aborts it at once. The second must not run: it rejects with the abort's reason,
// and its output keeps the mark it was filled with.
import { runChild } from "./child";

/** What the child reports when the aborted call behaved. */
export const abortedWhileWaitingOutcome = { first: "fulfilled", second: "rejected", reason: true, untouched: true, stderr: "" };

/**
 * Runs the case on `device` ("cpu", or "cuda:0" with bf16 tensors) and gives the child's report.
 * @example expect(abortedWhileWaiting("cpu")).toEqual(abortedWhileWaitingOutcome);
 */
export function abortedWhileWaiting(device: "cpu" | "cuda:0"): Record<string, unknown> {
  // The long call must still hold the thread when the abort comes: on CUDA it is made long
  // enough (a 16K-token prefill, milliseconds) that the host's few steps in between cannot outlast it.
  const [n, h, d, dtype] = device === "cpu" ? [1024, 4, 64, "f32"] : [16384, 32, 128, "bf16"];
  const r = runChild(
    `
    const { kernels, Tensor } = require(process.env.LIGHTTRANSFER_ROOT + "/lib");
    const options = { device: ${JSON.stringify(device)}, dtype: ${JSON.stringify(dtype)} };
    const random = (shape) =>
      Tensor.from(Float32Array.from({ length: shape.reduce((a, b) => a * b) }, () => Math.random() - 0.5), shape, options);
    const [n, h, d] = [${n}, ${h}, ${d}];
    const [q, k, v] = [random([n, h, d]), random([n, h, d]), random([n, h, d])];
    const [q2, k2, v2] = [random([8, h, d]), random([8, h, d]), random([8, h, d])];
    const out = Tensor.from(new Float32Array(8 * h * d).fill(7), [8, h, d], options);
    const controller = new AbortController();
    const reason = new Error("no longer wanted");
    const long = kernels.prefillAttentionAsync({ q, k, v });
    const queued = kernels.prefillAttentionAsync({ q: q2, k: k2, v: v2, out }, { signal: controller.signal });
    controller.abort(reason);
    Promise.allSettled([long, queued]).then(([first, second]) => {
      console.log(JSON.stringify({
        first: first.status,
        second: second.status,
        reason: second.status === "rejected" && second.reason === reason,
        untouched: out.toFloat32Array().every((x) => x === 7),
      }));
    });
    `,
    { env: { UV_THREADPOOL_SIZE: "1" } },
  );
  let report: Record<string, unknown>;
  try {
    report = JSON.parse(r.stdout);
  } catch {
    report = { stdout: r.stdout, status: r.status, signal: r.signal };
  }
  return { ...report, stderr: r.stderr };
}
