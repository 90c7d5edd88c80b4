// Shapes the addon must refuse with an Error instead of crashing: rank-0 tensors (the
// constructor and slice() are exported), slice() with dimensions whose product overflows, a
// kernel dimension past int32, sink + window past int32. Reports { case: message | "no error" } for the case named on the command line.

const { addon, randomTensor, tensor, ints, report, outcomes, attempt } = require("./common");

attempt("rank-0 constructor", () => {
  const x = new addon.NativeTensor([], "f32", "cpu");
  addon.rmsNorm({ x, weight: randomTensor([1]), out: new addon.NativeTensor([], "f32", "cpu") });
});
attempt("rank-0 slice into rmsNorm", () => {
  const base = randomTensor([4]);
  const x = base.slice(0, []);
  addon.rmsNorm({ x, weight: randomTensor([1]), out: base.slice(1, []) });
});
attempt("rank-0 slice into swiGlu", () => {
  const base = randomTensor([4]);
  addon.swiGlu({ x: base.slice(0, []), out: base.slice(1, []) });
});
attempt("slice with huge dims", () => {
  const t = randomTensor([16]);
  const s = t.slice(0, [2 ** 40, 2 ** 40, 2 ** 30]);
  s.read();
});
attempt("slice offset past 2^63", () => {
  randomTensor([16]).slice(1e300, [1]);
});
attempt("argmax over more than 2^31 logits", () => {
  // 4 GiB of address space that is never touched: the call must be refused before the kernel.
  const logits = new addon.NativeTensor([1, 2 ** 31 + 64], "bf16", "cpu");
  const out = new addon.NativeTensor([1], "i32", "cpu");
  addon.argmax({ logits, out });
  outcomes["argmax result"] = out.read()[0];
});
attempt("cutToStreaming sink + window past int32", () => {
  const pool = () => randomTensor([4, 4, 1, 8]);
  addon.cutToStreaming({
    kPages: pool(),
    vPages: pool(),
    srcPageTable: ints([0, 1, 2]),
    dstPageTable: ints([3, 2, 1]),
    length: 12,
    sink: 2 ** 31 - 8,
    window: 1024,
  });
});
attempt("prefill streaming sink + window past int32", () => {
  const x = () => randomTensor([8, 2, 8]);
  addon.prefillAttention({
    q: x(),
    k: x(),
    v: x(),
    out: tensor([8, 2, 8], "f32"),
    scale: 0.25,
    streaming: { sink: 2 ** 31 - 2, window: 2 ** 30 },
  });
});
report(outcomes);
