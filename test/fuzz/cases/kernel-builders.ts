// Valid calls of every exported kernel, built from a seed: small random shapes and contents, and
// for each tensor argument what the kernel may accept in its place. The kernel fuzz mutates one
// thing of such a call and checks how the kernel answers.
import { type DType, kernels, Tensor } from "../../../lib";
import type { Random } from "../../helpers/reference";

export type FloatDType = "f32" | "f16" | "bf16";

/**
 * What a tensor argument may be. same: the call's float dtype; i32 / f32: exactly that;
 * anyFloat: any float dtype (mixed-precision arguments such as linear's weight).
 * fixedShape: its shape follows from the other arguments, so any other shape is an error.
 * output: an output the TypeScript wrapper allocates when it is left out.
 * optional: an input the call may go without (bias, residual).
 * index: i32 contents that address memory, valid in [lo, hi].
 */
export interface ArgSpec {
  name: string;
  rule: "same" | "i32" | "f32" | "anyFloat";
  fixedShape: boolean;
  output?: boolean;
  optional?: boolean;
  index?: { lo: number; hi: number };
}

/** A number option: its place in the options object and what values are valid. */
export interface NumberSpec {
  path: string[];
  kind: "int" | "positive" | "dtype";
  min?: number;
  max?: number;
  required?: boolean;
}

export interface BuiltCall {
  tensors: Record<string, Tensor>;
  args: ArgSpec[];
  numbers: NumberSpec[];
  /** Plain option values (numbers, nested objects), merged with the tensors into the options. */
  settings: Record<string, unknown>;
  /** The TypeScript call; returns the result tensors to compare (outputs and in-place inputs). */
  call(options: Record<string, unknown>): Tensor[];
  callAsync?(options: Record<string, unknown>): Promise<Tensor[]>;
  /** The addon's name for the kernel and its arguments as the addon takes them (handles). */
  native?: {
    name: string;
    args(options: Record<string, unknown>): Record<string, unknown>;
    observe(options: Record<string, unknown>): Tensor[];
  };
}

const MAX = 2 ** 31 - 1;

export class Maker {
  readonly made: Tensor[] = [];
  constructor(readonly rng: Random) {}
  floats(shape: number[], dtype: DType): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    const t =
      dtype === "i32"
        ? Tensor.from(
            Int32Array.from({ length: n }, () => this.rng.int(-9, 9)),
            shape,
          )
        : Tensor.from(this.rng.floats(n), shape, { dtype });
    this.made.push(t);
    return t;
  }
  ints(values: number[], shape = [values.length]): Tensor {
    const t = Tensor.from(Int32Array.from(values), shape);
    this.made.push(t);
    return t;
  }
  disposeAll(): void {
    for (const t of this.made) t.dispose();
  }
}

/** Options for the TypeScript wrapper: the settings with the tensors in their places. */
export function optionsOf(b: BuiltCall): Record<string, unknown> {
  return { ...structuredCloneSettings(b.settings), ...b.tensors };
}

function structuredCloneSettings(s: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(JSON.stringify(s));
}

// A getter the fuzz installed on a tensor option may hand out that tensor on its first read only;
// the call's result is observed in the tensor it handed out, not in what a later read returns.
const t = (o: Record<string, unknown>, name: string) => {
  const getter = Object.getOwnPropertyDescriptor(o, name)?.get as { firstValue?: unknown } | undefined;
  return (getter && "firstValue" in getter ? getter.firstValue : o[name]) as Tensor;
};
const h = (o: Record<string, unknown>, name: string) => (o[name] as Tensor | undefined)?.handle ?? o[name];

function distinct(rng: Random, count: number, below: number): number[] {
  return rng.shuffle(Array.from({ length: below }, (_, i) => i)).slice(0, count);
}

export const builders: Record<string, (m: Maker, dtype: FloatDType) => BuiltCall> = {
  prefillAttention(m, dtype) {
    const rng = m.rng;
    const nk = rng.int(1, 12),
      nq = rng.int(1, nk),
      hkv = rng.int(1, 2),
      hq = hkv * rng.int(1, 2),
      d = 2 * rng.int(1, 4);
    const tensors: Record<string, Tensor> = {
      q: m.floats([nq, hq, d], dtype),
      k: m.floats([nk, hkv, d], dtype),
      v: m.floats([nk, hkv, d], dtype),
      out: Tensor.empty([nq, hq, d], dtype),
      lse: Tensor.empty([nq, hq], "f32"),
    };
    const settings: Record<string, unknown> = { scale: rng.next() < 0.3 ? 0.25 + rng.next() : undefined };
    if (rng.next() < 0.5) settings.streaming = { sink: rng.int(0, 3), window: rng.int(1, 6) };
    const numbers: NumberSpec[] = [{ path: ["scale"], kind: "positive" }];
    if (settings.streaming)
      numbers.push(
        { path: ["streaming", "sink"], kind: "int", min: 0, max: MAX, required: true },
        { path: ["streaming", "window"], kind: "int", min: 1, max: MAX, required: true },
      );
    const args: ArgSpec[] = [
      { name: "q", rule: "same", fixedShape: false },
      { name: "k", rule: "same", fixedShape: false },
      { name: "v", rule: "same", fixedShape: true },
      { name: "out", rule: "same", fixedShape: true, output: true },
      { name: "lse", rule: "f32", fixedShape: true, output: true },
    ];
    if (rng.next() < 0.5) {
      settings.lazyRatio = { sink: rng.int(0, 3), window: rng.int(1, 6), lastQueries: rng.int(1, nq) };
      tensors.lazyRatioOut = Tensor.empty([hq], "f32");
      args.push({ name: "lazyRatioOut", rule: "f32", fixedShape: true, output: true });
      numbers.push(
        { path: ["lazyRatio", "sink"], kind: "int", min: 0, max: MAX, required: true },
        { path: ["lazyRatio", "window"], kind: "int", min: 1, max: MAX, required: true },
        { path: ["lazyRatio", "lastQueries"], kind: "int", min: 1, max: MAX, required: true },
      );
    }
    m.made.push(tensors.out, tensors.lse, ...(tensors.lazyRatioOut ? [tensors.lazyRatioOut] : []));
    const observe = (r: kernels.PrefillAttentionResult) => [r.out, r.lse, r.lazyRatio].filter((x): x is Tensor => x !== undefined);
    return {
      tensors,
      args,
      numbers,
      settings,
      call: (o) => observe(kernels.prefillAttention(o as never)),
      callAsync: async (o) => observe(await kernels.prefillAttentionAsync(o as never)),
      native: {
        name: "prefillAttention",
        args: (o) => ({
          q: h(o, "q"),
          k: h(o, "k"),
          v: h(o, "v"),
          out: h(o, "out"),
          lse: h(o, "lse"),
          lazyRatio: h(o, "lazyRatioOut"),
          ratio: o.lazyRatio,
          scale: o.scale,
          streaming: o.streaming,
        }),
        observe: (o) => [t(o, "out"), t(o, "lse"), ...(o.lazyRatioOut ? [t(o, "lazyRatioOut")] : [])],
      },
    };
  },

  decodeAttention(m, dtype) {
    const rng = m.rng;
    const pages = rng.int(2, 6),
      pageSize = rng.int(1, 4),
      hkv = rng.int(1, 2),
      hq = hkv * rng.int(1, 2),
      d = 2 * rng.int(1, 4);
    const batch = rng.int(1, 3),
      maxPages = rng.int(1, 3);
    const table = Array.from({ length: batch * maxPages }, () => rng.int(0, pages - 1));
    const lens = Array.from({ length: batch }, () => rng.int(1, maxPages * pageSize));
    const tensors: Record<string, Tensor> = {
      q: m.floats([batch, hq, d], dtype),
      kPages: m.floats([pages, pageSize, hkv, d], dtype),
      vPages: m.floats([pages, pageSize, hkv, d], dtype),
      pageTable: m.ints(table, [batch, maxPages]),
      seqLens: m.ints(lens),
      out: m.floats([batch, hq, d], dtype),
      lse: m.floats([batch, hq], "f32"),
    };
    const observe = (r: kernels.DecodeAttentionResult) => [r.out, r.lse].filter((x): x is Tensor => x !== undefined);
    return {
      tensors,
      settings: { scale: rng.next() < 0.3 ? 0.5 : undefined },
      numbers: [{ path: ["scale"], kind: "positive" }],
      args: [
        { name: "q", rule: "same", fixedShape: false },
        { name: "kPages", rule: "same", fixedShape: false },
        { name: "vPages", rule: "same", fixedShape: true },
        { name: "pageTable", rule: "i32", fixedShape: false, index: { lo: 0, hi: pages - 1 } },
        { name: "seqLens", rule: "i32", fixedShape: true, index: { lo: 0, hi: maxPages * pageSize } },
        { name: "out", rule: "same", fixedShape: true, output: true },
        { name: "lse", rule: "f32", fixedShape: true, output: true },
      ],
      call: (o) => observe(kernels.decodeAttention(o as never)),
      callAsync: async (o) => observe(await kernels.decodeAttentionAsync(o as never)),
      native: {
        name: "decodeAttention",
        args: (o) => ({
          q: h(o, "q"),
          kPages: h(o, "kPages"),
          vPages: h(o, "vPages"),
          pageTable: h(o, "pageTable"),
          seqLens: h(o, "seqLens"),
          out: h(o, "out"),
          lse: h(o, "lse"),
          scale: o.scale,
        }),
        observe: (o) => [t(o, "out"), t(o, "lse")],
      },
    };
  },

  appendKv(m, dtype) {
    const rng = m.rng;
    const pages = rng.int(1, 5),
      pageSize = rng.int(1, 4),
      hkv = rng.int(1, 2),
      d = 2 * rng.int(1, 4);
    const tokens = rng.int(1, Math.min(5, pages * pageSize));
    const slots = distinct(rng, tokens, pages * pageSize).map((s) => (rng.next() < 0.1 ? -1 : s));
    const tensors = {
      k: m.floats([tokens, hkv, d], dtype),
      v: m.floats([tokens, hkv, d], dtype),
      kPages: m.floats([pages, pageSize, hkv, d], dtype),
      vPages: m.floats([pages, pageSize, hkv, d], dtype),
      slots: m.ints(slots),
    };
    const observe = (o: Record<string, unknown>) => [t(o, "kPages"), t(o, "vPages")];
    return {
      tensors,
      settings: {},
      numbers: [],
      args: [
        { name: "k", rule: "same", fixedShape: false },
        { name: "v", rule: "same", fixedShape: true },
        { name: "kPages", rule: "same", fixedShape: false },
        { name: "vPages", rule: "same", fixedShape: true },
        { name: "slots", rule: "i32", fixedShape: true, index: { lo: -1, hi: pages * pageSize - 1 } },
      ],
      call: (o) => {
        kernels.appendKv(o as never);
        return observe(o);
      },
      callAsync: async (o) => {
        await kernels.appendKvAsync(o as never);
        return observe(o);
      },
      native: {
        name: "appendKv",
        args: (o) => ({ k: h(o, "k"), v: h(o, "v"), kPages: h(o, "kPages"), vPages: h(o, "vPages"), slots: h(o, "slots") }),
        observe,
      },
    };
  },

  cutToStreaming(m, dtype) {
    const rng = m.rng;
    const pages = rng.int(1, 6),
      pageSize = rng.int(1, 4),
      hkv = rng.int(1, 2),
      d = 2 * rng.int(1, 3);
    const length = rng.int(0, pages * pageSize),
      sink = rng.int(0, 3),
      window = rng.int(1, 6);
    const src = distinct(rng, Math.max(1, Math.ceil(length / pageSize)), pages);
    const ring = Math.min(length, sink + window);
    const dst = src.slice(0, Math.max(1, Math.ceil(ring / pageSize)));
    const tensors = {
      kPages: m.floats([pages, pageSize, hkv, d], dtype),
      vPages: m.floats([pages, pageSize, hkv, d], dtype),
      srcPageTable: m.ints(src),
      dstPageTable: m.ints(dst),
    };
    const observe = (o: Record<string, unknown>) => [t(o, "kPages"), t(o, "vPages")];
    return {
      tensors,
      settings: { length, sink, window },
      numbers: [
        { path: ["length"], kind: "int", min: 0, max: MAX, required: true },
        { path: ["sink"], kind: "int", min: 0, max: MAX, required: true },
        { path: ["window"], kind: "int", min: 1, max: MAX, required: true },
      ],
      args: [
        { name: "kPages", rule: "same", fixedShape: false },
        { name: "vPages", rule: "same", fixedShape: true },
        { name: "srcPageTable", rule: "i32", fixedShape: false, index: { lo: 0, hi: pages - 1 } },
        { name: "dstPageTable", rule: "i32", fixedShape: false, index: { lo: 0, hi: pages - 1 } },
      ],
      call: (o) => {
        kernels.cutToStreaming(o as never);
        return observe(o);
      },
      callAsync: async (o) => {
        await kernels.cutToStreamingAsync(o as never);
        return observe(o);
      },
      native: {
        name: "cutToStreaming",
        args: (o) => ({
          kPages: h(o, "kPages"),
          vPages: h(o, "vPages"),
          srcPageTable: h(o, "srcPageTable"),
          dstPageTable: h(o, "dstPageTable"),
          length: o.length,
          sink: o.sink,
          window: o.window,
        }),
        observe,
      },
    };
  },

  gatherKv(m, dtype) {
    const rng = m.rng;
    const pages = rng.int(1, 5),
      pageSize = rng.int(1, 4),
      hkv = rng.int(1, 2),
      d = 2 * rng.int(1, 3);
    const length = rng.int(1, 6);
    const slots = Array.from({ length }, () => rng.int(0, pages * pageSize - 1));
    const tensors = {
      kPages: m.floats([pages, pageSize, hkv, d], dtype),
      vPages: m.floats([pages, pageSize, hkv, d], dtype),
      slots: m.ints(slots),
      k: m.floats([length, hkv, d], dtype),
      v: m.floats([length, hkv, d], dtype),
    };
    return {
      tensors,
      settings: {},
      numbers: [],
      args: [
        { name: "kPages", rule: "same", fixedShape: false },
        { name: "vPages", rule: "same", fixedShape: true },
        { name: "slots", rule: "i32", fixedShape: false, index: { lo: 0, hi: pages * pageSize - 1 } },
        { name: "k", rule: "same", fixedShape: true, output: true },
        { name: "v", rule: "same", fixedShape: true, output: true },
      ],
      call: (o) => {
        const r = kernels.gatherKv(o as never);
        return [r.k, r.v];
      },
      native: {
        name: "gatherKv",
        args: (o) => ({ kPages: h(o, "kPages"), vPages: h(o, "vPages"), slots: h(o, "slots"), k: h(o, "k"), v: h(o, "v") }),
        observe: (o) => [t(o, "k"), t(o, "v")],
      },
    };
  },

  lazyRatio(m, dtype) {
    const rng = m.rng;
    const nk = rng.int(1, 12),
      nq = rng.int(1, nk),
      hkv = rng.int(1, 2),
      hq = hkv * rng.int(1, 2),
      d = 2 * rng.int(1, 4);
    const lse = Float32Array.from({ length: nq * hq }, () => 2 + 2 * rng.next());
    const tensors: Record<string, Tensor> = {
      q: m.floats([nq, hq, d], dtype),
      k: m.floats([nk, hkv, d], dtype),
      out: m.floats([hq], "f32"),
    };
    tensors.lse = Tensor.from(lse, [nq, hq]);
    m.made.push(tensors.lse);
    return {
      tensors,
      settings: { sink: rng.int(0, 3), window: rng.int(1, 6), lastQueries: rng.int(1, nq), scale: rng.next() < 0.3 ? 0.5 : undefined },
      numbers: [
        { path: ["sink"], kind: "int", min: 0, max: MAX, required: true },
        { path: ["window"], kind: "int", min: 1, max: MAX, required: true },
        { path: ["lastQueries"], kind: "int", min: 1, max: MAX, required: true },
        { path: ["scale"], kind: "positive" },
      ],
      args: [
        { name: "q", rule: "same", fixedShape: false },
        { name: "k", rule: "same", fixedShape: false },
        { name: "lse", rule: "f32", fixedShape: true },
        { name: "out", rule: "f32", fixedShape: true, output: true },
      ],
      call: (o) => [kernels.lazyRatio(o as never)],
      callAsync: async (o) => [await kernels.lazyRatioAsync(o as never)],
      native: {
        name: "lazyRatio",
        args: (o) => ({
          q: h(o, "q"),
          k: h(o, "k"),
          lse: h(o, "lse"),
          out: h(o, "out"),
          sink: o.sink,
          window: o.window,
          lastQueries: o.lastQueries,
          scale: o.scale,
        }),
        observe: (o) => [t(o, "out")],
      },
    };
  },

  linear(m, dtype) {
    const rng = m.rng;
    const rows = rng.int(1, 4),
      k = rng.int(1, 8),
      wType = rng.pick<FloatDType>(["f32", "bf16", "f16"]);
    const lead = rng.next() < 0.3 ? [2, rows] : [rows];
    // SwiGLU of [gate, up] as the input (x has twice the weight's columns) or of the product (the
    // weight's rows are [gate, up], out has half of them). The norm's weight is a nested tensor,
    // which these cases do not build; test/model-ops.test.ts covers it.
    const transform = rng.pick(["none", "none", "swiGlu", "swiGluOutput"] as const);
    const n = transform === "swiGluOutput" ? 2 * rng.int(1, 4) : rng.int(1, 8);
    const tensors: Record<string, Tensor> = {
      x: m.floats([...lead, transform === "swiGlu" ? 2 * k : k], dtype),
      weight: m.floats([n, k], wType),
      out: m.floats([...lead, transform === "swiGluOutput" ? n / 2 : n], dtype),
    };
    if (rng.next() < 0.5) tensors.bias = m.floats([n], wType);
    return {
      tensors,
      settings: transform === "none" ? {} : { [transform]: true },
      numbers: [],
      args: [
        { name: "x", rule: "same", fixedShape: false },
        { name: "weight", rule: "anyFloat", fixedShape: false },
        ...(tensors.bias ? [{ name: "bias", rule: "anyFloat", fixedShape: true, optional: true } as ArgSpec] : []),
        { name: "out", rule: "same", fixedShape: true, output: true },
      ],
      call: (o) => [kernels.linear(o as never)],
      callAsync: async (o) => [await kernels.linearAsync(o as never)],
      native: {
        name: "linear",
        args: (o) => ({
          x: h(o, "x"),
          weight: h(o, "weight"),
          bias: h(o, "bias"),
          out: h(o, "out"),
          swiGlu: o.swiGlu,
          swiGluOutput: o.swiGluOutput,
        }),
        observe: (o) => [t(o, "out")],
      },
    };
  },

  rmsNorm(m, dtype) {
    const rng = m.rng;
    const rows = rng.int(1, 4),
      dim = rng.int(1, 16);
    const tensors: Record<string, Tensor> = {
      x: m.floats([rows, dim], dtype),
      weight: m.floats([dim], rng.pick<FloatDType>(["f32", "bf16", "f16"])),
      out: m.floats([rows, dim], dtype),
    };
    if (rng.next() < 0.5) tensors.residual = m.floats([rows, dim], dtype);
    // t() takes a getter's first value: reading o.residual again would run a flipping getter.
    const observe = (o: Record<string, unknown>, out: Tensor) => {
      const residual = t(o, "residual");
      return [out, ...(residual instanceof Tensor ? [residual] : [])];
    };
    return {
      tensors,
      settings: { eps: rng.next() < 0.5 ? 1e-5 : undefined },
      numbers: [{ path: ["eps"], kind: "positive" }],
      args: [
        { name: "x", rule: "same", fixedShape: false },
        { name: "weight", rule: "anyFloat", fixedShape: true },
        ...(tensors.residual ? [{ name: "residual", rule: "same", fixedShape: true, optional: true } as ArgSpec] : []),
        { name: "out", rule: "same", fixedShape: true, output: true },
      ],
      call: (o) => observe(o, kernels.rmsNorm(o as never)),
      native: {
        name: "rmsNorm",
        args: (o) => ({ x: h(o, "x"), weight: h(o, "weight"), residual: h(o, "residual"), out: h(o, "out"), eps: o.eps }),
        observe: (o) => observe(o, t(o, "out")),
      },
    };
  },

  rope(m, dtype) {
    const rng = m.rng;
    const tokens = rng.int(1, 5),
      hkv = rng.int(1, 2),
      hq = hkv * rng.int(1, 2),
      d = 2 * rng.int(1, 4);
    const tensors = {
      q: m.floats([tokens, hq, d], dtype),
      k: m.floats([tokens, hkv, d], dtype),
      positions: m.ints(Array.from({ length: tokens }, () => rng.int(0, 4000))),
      invFreq: m.floats([d / 2], "f32"),
    };
    const observe = (o: Record<string, unknown>) => [t(o, "q"), t(o, "k")];
    return {
      tensors,
      settings: {},
      numbers: [],
      args: [
        { name: "q", rule: "same", fixedShape: false },
        { name: "k", rule: "same", fixedShape: false },
        { name: "positions", rule: "i32", fixedShape: true },
        { name: "invFreq", rule: "f32", fixedShape: true },
      ],
      call: (o) => {
        kernels.rope(o as never);
        return observe(o);
      },
      native: {
        name: "rope",
        args: (o) => ({ q: h(o, "q"), k: h(o, "k"), positions: h(o, "positions"), invFreq: h(o, "invFreq") }),
        observe,
      },
    };
  },

  ropeAppendKv(m, dtype) {
    const rng = m.rng;
    const pages = rng.int(1, 5),
      pageSize = rng.int(1, 4),
      hkv = rng.int(1, 2),
      hq = hkv * rng.int(1, 2),
      d = 2 * rng.int(1, 4);
    const tokens = rng.int(1, Math.min(4, pages * pageSize));
    const tensors = {
      qkv: m.floats([tokens, (hq + 2 * hkv) * d], dtype),
      positions: m.ints(Array.from({ length: tokens }, () => rng.int(0, 4000))),
      invFreq: m.floats([d / 2], "f32"),
      kPages: m.floats([pages, pageSize, hkv, d], dtype),
      vPages: m.floats([pages, pageSize, hkv, d], dtype),
      slots: m.ints(distinct(rng, tokens, pages * pageSize)),
      q: m.floats([tokens, hq, d], dtype),
    };
    const observe = (o: Record<string, unknown>, q: Tensor) => [q, t(o, "kPages"), t(o, "vPages")];
    return {
      tensors,
      settings: {},
      numbers: [],
      args: [
        { name: "qkv", rule: "same", fixedShape: false },
        { name: "positions", rule: "i32", fixedShape: true },
        { name: "invFreq", rule: "f32", fixedShape: true },
        { name: "kPages", rule: "same", fixedShape: false },
        { name: "vPages", rule: "same", fixedShape: true },
        { name: "slots", rule: "i32", fixedShape: true, index: { lo: -1, hi: pages * pageSize - 1 } },
        { name: "q", rule: "same", fixedShape: true, output: true },
      ],
      call: (o) => observe(o, kernels.ropeAppendKv(o as never)),
      callAsync: async (o) => observe(o, await kernels.ropeAppendKvAsync(o as never)),
      native: {
        name: "ropeAppendKv",
        args: (o) => ({
          qkv: h(o, "qkv"),
          positions: h(o, "positions"),
          invFreq: h(o, "invFreq"),
          kPages: h(o, "kPages"),
          vPages: h(o, "vPages"),
          slots: h(o, "slots"),
          q: h(o, "q"),
        }),
        observe: (o) => observe(o, t(o, "q")),
      },
    };
  },

  swiGlu(m, dtype) {
    const rng = m.rng;
    const rows = rng.int(1, 4),
      width = rng.int(1, 8);
    const tensors = { x: m.floats([rows, 2 * width], dtype), out: m.floats([rows, width], dtype) };
    return {
      tensors,
      settings: {},
      numbers: [],
      args: [
        { name: "x", rule: "same", fixedShape: false },
        { name: "out", rule: "same", fixedShape: true, output: true },
      ],
      call: (o) => [kernels.swiGlu(o as never)],
      native: { name: "swiGlu", args: (o) => ({ x: h(o, "x"), out: h(o, "out") }), observe: (o) => [t(o, "out")] },
    };
  },

  embedding(m, dtype) {
    const rng = m.rng;
    const vocab = rng.int(1, 12),
      dim = rng.int(1, 8),
      tokens = rng.int(1, 6);
    const tensors = {
      ids: m.ints(Array.from({ length: tokens }, () => rng.int(0, vocab - 1))),
      table: m.floats([vocab, dim], dtype),
      out: m.floats([tokens, dim], rng.pick<FloatDType>(["f32", "bf16", "f16"])),
    };
    return {
      tensors,
      settings: {},
      numbers: [{ path: ["dtype"], kind: "dtype" }],
      args: [
        { name: "ids", rule: "i32", fixedShape: false, index: { lo: 0, hi: vocab - 1 } },
        { name: "table", rule: "anyFloat", fixedShape: false },
        { name: "out", rule: "anyFloat", fixedShape: true, output: true },
      ],
      call: (o) => [kernels.embedding(o as never)],
      native: {
        name: "embedding",
        args: (o) => ({ ids: h(o, "ids"), table: h(o, "table"), out: h(o, "out") }),
        observe: (o) => [t(o, "out")],
      },
    };
  },

  argmax(m, dtype) {
    const rng = m.rng;
    const rows = rng.int(1, 4),
      vocab = rng.int(1, 40);
    const tensors = { logits: m.floats([rows, vocab], dtype), out: m.ints(new Array(rows).fill(0)) };
    return {
      tensors,
      settings: {},
      numbers: [],
      args: [
        { name: "logits", rule: "same", fixedShape: false },
        { name: "out", rule: "i32", fixedShape: true, output: true },
      ],
      call: (o) => [kernels.argmax(o as never)],
      native: { name: "argmax", args: (o) => ({ logits: h(o, "logits"), out: h(o, "out") }), observe: (o) => [t(o, "out")] },
    };
  },

  topCandidates(m, dtype) {
    const rng = m.rng;
    const rows = rng.int(1, 3),
      vocab = rng.int(1, 40),
      k = rng.int(1, vocab);
    const tensors = {
      logits: m.floats([rows, vocab], dtype),
      temperature: Tensor.from(
        Float32Array.from({ length: rows }, () => 0.2 + rng.next()),
        [rows],
      ),
    };
    m.made.push(tensors.temperature);
    return {
      tensors,
      settings: { k, capacity: rng.next() < 0.5 ? k + rng.int(0, 4) : undefined },
      numbers: [
        { path: ["k"], kind: "int", min: 1, max: vocab, required: true },
        { path: ["capacity"], kind: "int", min: 1, max: MAX },
      ],
      args: [
        { name: "logits", rule: "same", fixedShape: false },
        { name: "temperature", rule: "f32", fixedShape: true },
      ],
      call: (o) => {
        const c = kernels.topCandidates(o as never);
        // ids and scores are in no particular order and hold count[r] entries (up to capacity):
        // compared as (id, score) pairs sorted by id.
        const capacity = c.ids.shape[1],
          count = c.count.toArray() as Int32Array;
        const ids = c.ids.toArray() as Int32Array,
          scores = c.scores.toArray() as Float32Array;
        const pairs: number[] = [];
        for (let r = 0; r < rows; r++) {
          const row = Array.from({ length: Math.min(count[r], capacity) }, (_, i) => [ids[r * capacity + i], scores[r * capacity + i]]);
          row.sort((x, y) => x[0] - y[0]);
          pairs.push(...row.flat(), -1);
        }
        c.ids.dispose();
        c.scores.dispose();
        return [Tensor.from(Float32Array.from(pairs), [pairs.length]), c.count, c.max, c.mass];
      },
    };
  },

  repetitionPenalty(m, dtype) {
    const rng = m.rng;
    const rows = rng.int(1, 3),
      vocab = rng.int(1, 20);
    const perRow = Array.from({ length: rows }, () => distinct(rng, rng.int(0, Math.min(4, vocab)), vocab));
    if (perRow.every((row) => row.length === 0)) perRow[rows - 1] = [rng.int(0, vocab - 1)]; // ids cannot be empty
    const ids = perRow.flat();
    const offsets = [0];
    for (const row of perRow) offsets.push(offsets[offsets.length - 1] + row.length);
    const tensors = {
      logits: m.floats([rows, vocab], dtype),
      ids: m.ints(ids),
      offsets: m.ints(offsets),
      penalty: m.floats([rows], "f32"),
    };
    tensors.penalty.write(Float32Array.from({ length: rows }, () => 1.1 + rng.next()));
    const observe = (o: Record<string, unknown>) => [t(o, "logits")];
    return {
      tensors,
      settings: {},
      numbers: [],
      args: [
        { name: "logits", rule: "same", fixedShape: false },
        { name: "ids", rule: "i32", fixedShape: false, index: { lo: 0, hi: vocab - 1 } },
        { name: "offsets", rule: "i32", fixedShape: true, index: { lo: 0, hi: ids.length } },
        { name: "penalty", rule: "f32", fixedShape: true },
      ],
      call: (o) => {
        kernels.repetitionPenalty(o as never);
        return observe(o);
      },
      native: {
        name: "repetitionPenalty",
        args: (o) => ({ logits: h(o, "logits"), ids: h(o, "ids"), offsets: h(o, "offsets"), penalty: h(o, "penalty") }),
        observe,
      },
    };
  },
};

export const kernelNames = Object.keys(builders);
