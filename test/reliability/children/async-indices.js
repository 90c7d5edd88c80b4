// Each async kernel with index inputs is issued, and its index tensors are then overwritten
// with out-of-range values before the kernel can start (one libuv worker, busy with a long
// call). The kernel must read the indices it was given and checked: its output has to equal
// the sync call's. Reports { op: "same" | "different" } per op.

const { addon, device, float, randomFloats, tensor, randomTensor, ints, count, report } = require("./common");

const hkv = 2,
  d = 64,
  pageSize = 4,
  numPages = 8; // CUDA decode takes head dims 64 and 128
const poolShape = [numPages, pageSize, hkv, d];
const bad = (n) => Int32Array.from({ length: n }, (_, i) => (i % 2 ? -7 : 1 << 30));

function pools() {
  const k = randomFloats(count(poolShape)),
    v = randomFloats(count(poolShape));
  return () => ({ kPages: tensor(poolShape, float, k), vPages: tensor(poolShape, float, v) });
}
const same = (a, b) => a.length === b.length && a.every((x, i) => Object.is(x, b[i]));

// Each case: make() builds fresh inputs (the same contents each time), run(args, mode) calls
// the kernel, indices(args) lists the index tensors to overwrite, result(args) what to compare.
const cases = {
  appendKv: () => {
    const pool = pools(),
      k = randomFloats(3 * hkv * d),
      v = randomFloats(3 * hkv * d);
    return {
      make: () => ({ ...pool(), k: tensor([3, hkv, d], float, k), v: tensor([3, hkv, d], float, v), slots: ints([5, 17, 30]) }),
      indices: (a) => [a.slots],
      result: (a) => [...a.kPages.read(), ...a.vPages.read()],
    };
  },
  decodeAttention: () => {
    const pool = pools(),
      q = randomFloats(2 * 4 * d);
    return {
      make: () => ({
        ...pool(),
        q: tensor([2, 4, d], float, q),
        pageTable: tensor([2, 3], "i32", Int32Array.of(3, 1, 6, 0, 2, 5)),
        seqLens: ints([10, 7]),
        out: tensor([2, 4, d], float),
      }),
      indices: (a) => [a.pageTable, a.seqLens],
      result: (a) => [...a.out.read()],
    };
  },
  cutToStreaming: () => {
    const pool = pools();
    return {
      make: () => ({ ...pool(), srcPageTable: ints([4, 0, 6, 2, 7]), dstPageTable: ints([1, 3]), length: 20, sink: 2, window: 6 }),
      indices: (a) => [a.srcPageTable, a.dstPageTable],
      result: (a) => [...a.kPages.read(), ...a.vPages.read()],
    };
  },
  gatherKv: () => {
    const pool = pools();
    return {
      make: () => ({ ...pool(), slots: ints([9, 2, 31, 14]), k: tensor([4, hkv, d], float), v: tensor([4, hkv, d], float) }),
      indices: (a) => [a.slots],
      result: (a) => [...a.k.read(), ...a.v.read()],
    };
  },
  ropeAppendKv: () => {
    const pool = pools(),
      hq = 4,
      tokens = 3,
      qkv = randomFloats(tokens * (hq + 2 * hkv) * d);
    const invFreq = Float32Array.from({ length: d / 2 }, (_, i) => 10000 ** ((-2 * i) / d));
    return {
      make: () => ({
        ...pool(),
        qkv: tensor([tokens, (hq + 2 * hkv) * d], float, qkv),
        positions: ints([7, 8, 9]),
        invFreq: tensor([d / 2], "f32", invFreq),
        slots: ints([12, -1, 27]),
        q: tensor([tokens, hq, d], float),
      }),
      indices: (a) => [a.slots],
      result: (a) => [...a.kPages.read(), ...a.vPages.read(), ...a.q.read()],
    };
  },
  embedding: () => {
    const table = randomFloats(50 * d);
    return {
      make: () => ({ ids: ints([3, 49, 0, 17]), table: tensor([50, d], float, table), out: tensor([4, d], float) }),
      indices: (a) => [a.ids],
      result: (a) => [...a.out.read()],
    };
  },
  repetitionPenalty: () => {
    const logits = randomFloats(2 * 40);
    return {
      make: () => ({
        logits: tensor([2, 40], float, logits),
        ids: ints([1, 39, 5, 0, 22]),
        offsets: ints([0, 2, 5]),
        penalty: tensor([2], "f32", Float32Array.of(1.3, 1.7)),
      }),
      indices: (a) => [a.ids, a.offsets],
      result: (a) => [...a.logits.read()],
    };
  },
};

(async () => {
  // Keeps the only libuv worker busy, so each call below is queued behind it.
  const n = device === "cpu" ? 768 : 16384;
  const blocker = addon.prefillAttentionAsync({
    q: randomTensor([n, 8, 64]),
    k: randomTensor([n, 8, 64]),
    v: randomTensor([n, 8, 64]),
    out: tensor([n, 8, 64], float),
    scale: 0.125,
  });
  const pending = [];
  for (const [op, build] of Object.entries(cases)) {
    const c = build();
    const expected = c.make();
    addon[op](expected);
    const args = c.make();
    const done = addon[`${op}Async`](args);
    for (const t of c.indices(args)) t.write(bad(t.read().length));
    pending.push(done.then(() => [op, same(c.result(args), c.result(expected)) ? "same" : "different"]));
  }
  await blocker;
  report(Object.fromEntries(await Promise.all(pending)));
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
