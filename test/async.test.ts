// Async kernels give the same results as sync ones, off the event loop, survive inputs disposed
// while they run, and do not run once aborted while they wait for a thread.
import { kernels, Tensor } from "../lib";
import { abortedWhileWaiting, abortedWhileWaitingOutcome } from "./helpers/aborted-async";
import { Random } from "./helpers/reference";
import { TensorScope } from "./helpers/tensors";

const rng = new Random();
const scope = new TensorScope();
afterEach(() => scope.dispose());

test("async prefill, decode and lazy ratio equal their sync forms", async () => {
  const n = 96,
    hq = 8,
    hkv = 2,
    d = 64;
  const q = scope.random(rng, [n, hq, d], "bf16").tensor;
  const k = scope.random(rng, [n, hkv, d], "bf16").tensor;
  const v = scope.random(rng, [n, hkv, d], "bf16").tensor;
  const spec = { sink: 4, window: 16, lastQueries: 8 };
  const sync = kernels.prefillAttention({ q, k, v, returnLse: true, lazyRatio: spec });
  const asyncRes = await kernels.prefillAttentionAsync({ q, k, v, returnLse: true, lazyRatio: spec });
  for (const r of [sync, asyncRes]) [r.out, r.lse, r.lazyRatio].forEach((x) => scope.add(x));
  expect(Array.from(asyncRes.out.toArray())).toEqual(Array.from(sync.out.toArray()));
  expect(Array.from(asyncRes.lazyRatio!.toArray())).toEqual(Array.from(sync.lazyRatio!.toArray()));
  const ratio = scope.add(await kernels.lazyRatioAsync({ q, k, lse: sync.lse!, ...spec }));
  expect(ratio.shape).toEqual([hq]);

  const kPages = scope.random(rng, [8, 16, hkv, d], "bf16").tensor;
  const vPages = scope.random(rng, [8, 16, hkv, d], "bf16").tensor;
  const pageTable = scope.ints([3, 1, 6, 0, 2, 5], [2, 3]);
  const seqLens = scope.ints([40, 17]);
  const a = kernels.decodeAttention({ q: scope.random(rng, [2, hq, d], "bf16").tensor, kPages, vPages, pageTable, seqLens });
  scope.add(a.out);
  const qd = scope.random(rng, [2, hq, d], "bf16").tensor;
  const s1 = kernels.decodeAttention({ q: qd, kPages, vPages, pageTable, seqLens });
  const s2 = await kernels.decodeAttentionAsync({ q: qd, kPages, vPages, pageTable, seqLens });
  [s1.out, s2.out].forEach((x) => scope.add(x));
  expect(Array.from(s2.out.toArray())).toEqual(Array.from(s1.out.toArray()));
});

test("the event loop keeps running while a long kernel works", async () => {
  const n = 1536,
    hq = 8,
    d = 128;
  const q = scope.random(rng, [n, hq, d], "f32").tensor;
  const k = scope.random(rng, [n, hq, d], "f32").tensor;
  const v = scope.random(rng, [n, hq, d], "f32").tensor;
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  const res = await kernels.prefillAttentionAsync({ q, k, v });
  clearInterval(timer);
  scope.add(res.out);
  expect(ticks).toBeGreaterThan(0);
});

test("disposing inputs while an async kernel runs neither crashes nor changes the result", async () => {
  const n = 512,
    hq = 4,
    d = 64;
  const mk = () => [
    scope.random(rng, [n, hq, d], "f32").tensor,
    scope.random(rng, [n, hq, d], "f32").tensor,
    scope.random(rng, [n, hq, d], "f32").tensor,
  ];
  const [q, k, v] = mk();
  const want = kernels.prefillAttention({ q, k, v });
  scope.add(want.out);
  const pending = kernels.prefillAttentionAsync({ q, k, v });
  q.dispose();
  k.dispose();
  v.dispose();
  const got = await pending;
  scope.add(got.out);
  expect(Array.from(got.out.toArray())).toEqual(Array.from(want.out.toArray()));
});

test("an async call aborted while it waits for a thread does not run: it rejects with the reason and its output is untouched", () => {
  expect(abortedWhileWaiting("cpu")).toEqual(abortedWhileWaitingOutcome);
});

test("calls sharing one signal, aborted while they wait for threads, each reject with its reason, with one abort listener", async () => {
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  process.on("warning", onWarning);
  try {
    // Long calls ahead take every thread of libuv's pool (4 unless UV_THREADPOOL_SIZE says more) for a while.
    const threads = Math.max(4, Number(process.env.UV_THREADPOOL_SIZE) || 4);
    const [n, h, d] = [512, 4, 64];
    const [q, k, v] = [0, 1, 2].map(() => scope.random(rng, [n, h, d], "f32").tensor);
    const long = Array.from({ length: 3 * threads }, () => kernels.prefillAttentionAsync({ q, k, v }));
    const controller = new AbortController();
    const reason = new Error("the user left");
    // Twelve calls of each of two kernels on the signal, each with its own output filled with a mark.
    const logits = scope.random(rng, [8, 16], "f32").tensor,
      weight = scope.random(rng, [16], "f32").tensor;
    const ids = Array.from({ length: 12 }, () => scope.add(Tensor.from(new Int32Array(8).fill(-7), [8], { dtype: "i32" })));
    const normed = Array.from({ length: 12 }, () => scope.add(Tensor.from(new Float32Array(8 * 16).fill(7), [8, 16])));
    const signal = controller.signal;
    const calls = [
      ...ids.map((out) => kernels.argmaxAsync({ logits, out }, { signal })),
      ...normed.map((out) => kernels.rmsNormAsync({ x: logits, weight, out }, { signal })),
    ];
    controller.abort(reason);
    const settled = await Promise.allSettled(calls);
    expect(settled.map((r) => r.status === "rejected" && r.reason === reason)).toEqual(settled.map(() => true));
    expect(ids.every((t) => t.toArray().every((x) => x === -7))).toBe(true);
    expect(normed.every((t) => t.toFloat32Array().every((x) => x === 7))).toBe(true);
    for (const r of await Promise.all(long)) scope.add(r.out);
    await new Promise((resolve) => setImmediate(resolve));
    expect(warnings.map((w) => w.name)).not.toContain("MaxListenersExceededWarning");
  } finally {
    process.off("warning", onWarning);
  }
});

test("every kernel has an async twin, and a bad argument rejects its Promise rather than throwing", async () => {
  const plain = Object.keys(kernels).filter(
    (name) => typeof (kernels as Record<string, unknown>)[name] === "function" && !name.endsWith("Async") && name !== "gemmBackend",
  );
  expect(plain.length).toBeGreaterThan(15);
  for (const name of plain) {
    const twin = (kernels as Record<string, unknown>)[`${name}Async`] as ((options: unknown) => Promise<unknown>) | undefined;
    expect({ name, twin: typeof twin }).toEqual({ name, twin: "function" });
    let result: Promise<unknown> | undefined;
    expect(() => {
      result = twin!({ q: 1, x: 1, logits: 1 });
    }).not.toThrow();
    await expect(result).rejects.toThrow(/must be a Tensor, got/);
  }
});
