// Getters on kernel options that dispose an output tensor. Options are read before any tensor
// is checked, so the call must fail with "disposed" instead of writing freed memory.
// Reports { case: error message | "no error" } for the case named on the command line.

const { addon, randomTensor, tensor, report, outcomes, attempt } = require("./common");

const n = 64,
  hq = 4,
  d = 32;
attempt("streaming", () => {
  const out = tensor([n, hq, d], "f32");
  addon.prefillAttention({
    q: randomTensor([n, hq, d]),
    k: randomTensor([n, hq, d]),
    v: randomTensor([n, hq, d]),
    out,
    get streaming() {
      out.dispose();
      return { sink: 4, window: 16 };
    },
  });
});
attempt("lazyRatio", () => {
  const lazyRatio = tensor([hq], "f32");
  addon.prefillAttention({
    q: randomTensor([n, hq, d]),
    k: randomTensor([n, hq, d]),
    v: randomTensor([n, hq, d]),
    out: tensor([n, hq, d], "f32"),
    lazyRatio,
    get ratio() {
      lazyRatio.dispose();
      return { sink: 4, window: 16, lastQueries: 8 };
    },
  });
});
attempt("nested getter", () => {
  const out = tensor([n, hq, d], "f32");
  addon.prefillAttention({
    q: randomTensor([n, hq, d]),
    k: randomTensor([n, hq, d]),
    v: randomTensor([n, hq, d]),
    out,
    streaming: {
      sink: 4,
      get window() {
        out.dispose();
        return 16;
      },
    },
  });
});
attempt("scale", () => {
  const out = tensor([n, hq, d], "f32");
  addon.prefillAttention({
    q: randomTensor([n, hq, d]),
    k: randomTensor([n, hq, d]),
    v: randomTensor([n, hq, d]),
    out,
    get scale() {
      out.dispose();
      return 0.125;
    },
  });
});
report(outcomes);
