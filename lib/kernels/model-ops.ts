// Model operations on tensors: the building blocks of a decoder layer. Outputs are allocated on
// the inputs' device unless passed in.

import { show } from "../common/validate";
import { addon, type GemmBackendInfo, type GemmChoice, gemmChoices } from "../runtime/native";
import { Tensor } from "../runtime/tensor";
import {
  type AsyncKernelOptions,
  handleOf,
  Outputs,
  optionalChoice,
  optionalFlag,
  optionalTensor,
  type PreparedOp,
  readNested,
  readOptions,
  requireTensor,
  runOp,
  runOpAsync,
} from "./call";

export interface LinearOptions {
  /** Input [..., k], or [..., 2k] holding [gate, up] with `swiGlu`. */
  x: Tensor;
  /** Weight [n, k], as a Hugging Face Linear stores it. */
  weight: Tensor;
  /** Optional bias [n], in the weight's dtype. */
  bias?: Tensor;
  /**
   * Output [..., n] in x's dtype ([..., n / 2] with `swiGluOutput`); required with `accumulate`.
   * It may share no bytes with the other tensors, except that a plain product on the CPU may
   * write into its own x.
   */
  out?: Tensor;
  /**
   * RMSNorm each row of x first, as `rmsNorm` does: x / sqrt(mean(x²) + eps) · weight, with
   * weight [k] in the weight's dtype and eps 1e-5 unless given.
   */
  norm?: { weight: Tensor; eps?: number };
  /** Take silu(gate) · up of each row of x (as `swiGlu`) as the input. */
  swiGlu?: boolean;
  /**
   * The weight's rows hold [gate, up] (n even): give silu(gate) · up of the product (+ bias),
   * [..., n / 2], as `swiGlu` of the plain product would, bit for bit. Not with `accumulate`.
   */
  swiGluOutput?: boolean;
  /**
   * The weight's rows are a layer's stacked q|k|v heads and x has a row per token: out is q
   * [tokens, hq, d] (required), and the product (+ bias) goes through `ropeAppendKv` with these
   * (its qkv the product), bit for bit as that op after the plain product would. Not with
   * `accumulate` or `swiGluOutput`.
   */
  ropeAppendKv?: Omit<RopeAppendKvOptions, "qkv" | "q">;
  /** out += the product (+ bias), rounded once, instead of out = it: a residual add. */
  accumulate?: boolean;
  /**
   * No kernel writes `weight` while this call may still overlap the kernels queued ahead of it, as
   * with a model's loaded weights: the CUDA small-batch GEMV may then start reading it before those
   * kernels finish. Leave it unset for a weight that an earlier call computes.
   */
  constantWeight?: boolean;
  /** The GEMM a CUDA call runs on (see `GemmChoice`); LIGHTTRANSFER_GEMM, else "auto", when not given. */
  gemm?: GemmChoice;
}

export type { GemmChoice };

function readGemmChoice(op: string, value: unknown): GemmChoice | undefined {
  return optionalChoice(op, "gemm", value, gemmChoices);
}

/** RMSNorm's epsilon when `norm.eps` is not given (Llama's). */
const defaultNormEps = 1e-5;

function linearArgs(options: LinearOptions, outputs: Outputs) {
  const o = readOptions("linear", options, [
    "x",
    "weight",
    "bias",
    "out",
    "norm",
    "swiGlu",
    "swiGluOutput",
    "ropeAppendKv",
    "accumulate",
    "constantWeight",
    "gemm",
  ]);
  const gemm = readGemmChoice("linear", o.gemm);
  const x = requireTensor("x", o.x),
    w = requireTensor("weight", o.weight);
  const bias = optionalTensor("linear", "bias", o.bias),
    givenOut = optionalTensor("linear", "out", o.out);
  const swiGlu = optionalFlag("linear", "swiGlu", o.swiGlu),
    swiGluOutput = optionalFlag("linear", "swiGluOutput", o.swiGluOutput),
    accumulate = optionalFlag("linear", "accumulate", o.accumulate),
    constantWeight = optionalFlag("linear", "constantWeight", o.constantWeight);
  const norm = readNested("linear", "norm", o.norm, ["weight", "eps"]);
  const rope = readNested("linear", "ropeAppendKv", o.ropeAppendKv, ["positions", "invFreq", "kPages", "vPages", "slots"]);
  if (accumulate && !givenOut) throw new TypeError("linear: accumulate adds into out, so out must be given");
  if (rope && !givenOut) throw new TypeError("linear: ropeAppendKv rotates the query heads into out, so out (q) must be given");
  const columns = swiGluOutput ? Math.floor(w.shape[0] / 2) : w.shape[0];
  const out = outputs.take(givenOut, () => Tensor.empty([...x.shape.slice(0, -1), columns], x.dtype, x.device));
  return {
    out,
    args: {
      x: x.handle,
      weight: w.handle,
      bias: handleOf(bias),
      out: out.handle,
      ...(norm && { norm: { weight: requireTensor("linear: norm.weight", norm.weight).handle, eps: norm.eps ?? defaultNormEps } }),
      ...(swiGlu && { swiGlu }),
      ...(swiGluOutput && { swiGluOutput }),
      ...(rope && {
        ropeAppendKv: {
          positions: requireTensor("linear: ropeAppendKv.positions", rope.positions).handle,
          invFreq: requireTensor("linear: ropeAppendKv.invFreq", rope.invFreq).handle,
          kPages: requireTensor("linear: ropeAppendKv.kPages", rope.kPages).handle,
          vPages: requireTensor("linear: ropeAppendKv.vPages", rope.vPages).handle,
          slots: requireTensor("linear: ropeAppendKv.slots", rope.slots).handle,
        },
      }),
      ...(accumulate && { accumulate }),
      ...(constantWeight && { constantWeight }),
      ...(gemm && { gemm }),
    },
  };
}

/**
 * y = input(x) · weightᵀ (+ bias), where input is x itself, its RMSNorm (`norm`) or its SwiGLU
 * (`swiGlu`); with `accumulate`, out += that, with `swiGluOutput`, out = SwiGLU of that, with
 * `ropeAppendKv`, out = its rotated query heads and the K/V pool gets the rest. A decoder projection
 * with the norm before it and the residual add, SwiGLU or RoPE + append after it. On CUDA the norm
 * or SwiGLU kernel runs first, then cuBLASLt (then the output's kernel), except that the default
 * (`gemm: "auto"`) runs 1-2 rows on one GEMV kernel that also does the norm, the add and the output
 * transform (RoPE there when the head dim is a multiple of 4); with `gemm: "gemv"`, every product
 * of 1-4 rows runs on it (the norm inside up to 2 rows; an input SwiGLU always runs first). On the
 * CPU, f32 arithmetic over any weight dtype.
 * @example
 * const logits = kernels.linear({ x: hidden, weight: lmHead });
 * kernels.linear({ x: h, norm: { weight: postNorm, eps: 1e-5 }, weight: gateUp, out: act, swiGluOutput: true });
 * kernels.linear({ x: act, weight: down, out: h, accumulate: true }); // h += down(swiGlu(gateUp(norm(h))))
 * kernels.linear({ x: h, norm: { weight: inputNorm, eps: 1e-5 }, weight: qkv, out: q, ropeAppendKv: { positions, invFreq, kPages, vPages, slots } });
 * kernels.linear({ x: attn, weight: o, out: h, accumulate: true, constantWeight: true }); // o: a loaded weight
 */
export function linear(o: LinearOptions): Tensor {
  return runOp(linearOp(o));
}

function linearOp(o: LinearOptions): PreparedOp<"linear", Tensor> {
  const outputs = new Outputs();
  const { out, args } = linearArgs(o, outputs);
  return { op: "linear", args, outputs, result: out };
}

/**
 * `linear` off the event loop.
 * @example const logits = await kernels.linearAsync({ x: hidden, weight: lmHead }, { signal: AbortSignal.timeout(1000) });
 */
export function linearAsync(o: LinearOptions, options: AsyncKernelOptions = {}): Promise<Tensor> {
  return runOpAsync(() => linearOp(o), options);
}

export interface RmsNormOptions {
  /** Input [..., dim]. */
  x: Tensor;
  /** Scale [dim]. */
  weight: Tensor;
  eps?: number;
  /** If given, updated in place to residual + x, and the norm is taken of that sum. */
  residual?: Tensor;
  /** [..., dim]: may be x itself (in place) where there is no residual, and share no memory with the rest. */
  out?: Tensor;
}

/**
 * RMSNorm per row: x / sqrt(mean(x²) + eps) · weight, optionally fused with the residual add.
 * @example const normed = kernels.rmsNorm({ x: attnOut, residual: hidden, weight: postAttentionNorm, eps: 1e-5 });
 */
export function rmsNorm(options: RmsNormOptions): Tensor {
  return runOp(rmsNormOp(options));
}

/**
 * `rmsNorm` off the event loop.
 * @example const normed = await kernels.rmsNormAsync({ x: attnOut, residual: hidden, weight: norm }, { signal });
 */
export function rmsNormAsync(options: RmsNormOptions, asyncOptions: AsyncKernelOptions = {}): Promise<Tensor> {
  return runOpAsync(() => rmsNormOp(options), asyncOptions);
}

function rmsNormOp(options: RmsNormOptions): PreparedOp<"rmsNorm", Tensor> {
  const o = readOptions("rmsNorm", options, ["x", "weight", "eps", "residual", "out"]);
  const x = requireTensor("x", o.x),
    weight = requireTensor("weight", o.weight);
  const residual = optionalTensor("rmsNorm", "residual", o.residual),
    givenOut = optionalTensor("rmsNorm", "out", o.out);
  const outputs = new Outputs();
  const out = outputs.take(givenOut, () => Tensor.empty(x.shape, x.dtype, x.device));
  const args = { x: x.handle, weight: weight.handle, residual: handleOf(residual), out: out.handle, eps: o.eps };
  return { op: "rmsNorm", args, outputs, result: out };
}

export interface RopeOptions {
  /** Queries [tokens, hq, d] and keys [tokens, hkv, d], rotated in place. */
  q: Tensor;
  k: Tensor;
  /** i32 [tokens]: the absolute position of each token. */
  positions: Tensor;
  /** f32 [d / 2]: inverse frequencies, after any scaling (see model/rope.ts). */
  invFreq: Tensor;
}

/**
 * Rotary position embedding in place, rotate-half layout (Llama, Mistral, Qwen2).
 * @example kernels.rope({ q, k, positions, invFreq });
 */
export function rope(options: RopeOptions): void {
  runOp(ropeOp(options));
}

/**
 * `rope` off the event loop.
 * @example await kernels.ropeAsync({ q, k, positions, invFreq });
 */
export function ropeAsync(options: RopeOptions, asyncOptions: AsyncKernelOptions = {}): Promise<void> {
  return runOpAsync(() => ropeOp(options), asyncOptions);
}

function ropeOp(options: RopeOptions): PreparedOp<"rope", void> {
  const o = readOptions("rope", options, ["q", "k", "positions", "invFreq"]);
  const args = {
    q: requireTensor("q", o.q).handle,
    k: requireTensor("k", o.k).handle,
    positions: requireTensor("positions", o.positions).handle,
    invFreq: requireTensor("invFreq", o.invFreq).handle,
  };
  return { op: "rope", args, outputs: new Outputs(), result: undefined };
}

export interface RopeAppendKvOptions {
  /** One stacked q|k|v projection [tokens, (hq + 2·hkv)·d]: each token's query heads, then key heads, then value heads. */
  qkv: Tensor;
  /** i32 [tokens]: the absolute position of each token. */
  positions: Tensor;
  /** f32 [d / 2]: inverse frequencies, after any scaling (see model/rope.ts). */
  invFreq: Tensor;
  /** The K/V pool [numPages, pageSize, hkv, d], in qkv's dtype. */
  kPages: Tensor;
  vPages: Tensor;
  /** i32 [tokens]: pool slot page · pageSize + offset of each token's K/V; -1 skips a token. */
  slots: Tensor;
  /** Output [tokens, hq, d]: the rotated queries. */
  q?: Tensor;
}

function ropeAppendArgs(options: RopeAppendKvOptions, outputs: Outputs) {
  const o = readOptions("ropeAppendKv", options, ["qkv", "positions", "invFreq", "kPages", "vPages", "slots", "q"]);
  const qkv = requireTensor("qkv", o.qkv),
    kPages = requireTensor("kPages", o.kPages);
  const positions = requireTensor("positions", o.positions),
    invFreq = requireTensor("invFreq", o.invFreq);
  const vPages = requireTensor("vPages", o.vPages),
    slots = requireTensor("slots", o.slots);
  const givenQ = optionalTensor("ropeAppendKv", "q", o.q);
  if (kPages.shape.length !== 4)
    throw new RangeError(`ropeAppendKv: kPages must be [numPages, pageSize, hkv, d], got [${kPages.shape.join(", ")}]`);
  const [, , hkv, d] = kPages.shape;
  const hq = qkv.shape[qkv.shape.length - 1] / d - 2 * hkv;
  if (!Number.isInteger(hq) || hq < 1)
    throw new RangeError(
      `ropeAppendKv: qkv's last dimension ${qkv.shape[qkv.shape.length - 1]} is not (hq + 2·${hkv})·${d} for any hq >= 1`,
    );
  const q = outputs.take(givenQ, () => Tensor.empty([qkv.shape[0], hq, d], qkv.dtype, qkv.device));
  const args = {
    qkv: qkv.handle,
    positions: positions.handle,
    invFreq: invFreq.handle,
    kPages: kPages.handle,
    vPages: vPages.handle,
    slots: slots.handle,
    q: q.handle,
  };
  return { q, args };
}

/**
 * RoPE and appendKv on the output of one stacked q|k|v projection: rotates the query heads
 * into `q`, and writes the rotated key heads and the value heads to the pool at `slots` — what
 * splitting the projection, `rope` and `appendKv` do, in one launch on CUDA (a decode step's
 * attention input, from one GEMM).
 * @example
 * const qkv = kernels.linear({ x, weight: qkvWeight });   // [tokens, (hq + 2·hkv)·d]
 * const q = kernels.ropeAppendKv({ qkv, positions, invFreq, kPages, vPages, slots });
 */
export function ropeAppendKv(o: RopeAppendKvOptions): Tensor {
  return runOp(ropeAppendKvOp(o));
}

function ropeAppendKvOp(o: RopeAppendKvOptions): PreparedOp<"ropeAppendKv", Tensor> {
  const outputs = new Outputs();
  const { q, args } = ropeAppendArgs(o, outputs);
  return { op: "ropeAppendKv", args, outputs, result: q };
}

/**
 * `ropeAppendKv` off the event loop.
 * @example const q = await kernels.ropeAppendKvAsync({ qkv, positions, invFreq, kPages, vPages, slots });
 */
export function ropeAppendKvAsync(o: RopeAppendKvOptions, options: AsyncKernelOptions = {}): Promise<Tensor> {
  return runOpAsync(() => ropeAppendKvOp(o), options);
}

/**
 * SwiGLU on stacked [gate, up] rows: silu(gate) · up, halving the last dimension.
 * @example const act = kernels.swiGlu({ x: gateUp });
 */
export function swiGlu(options: SwiGluOptions): Tensor {
  return runOp(swiGluOp(options));
}

/**
 * `swiGlu` off the event loop.
 * @example const act = await kernels.swiGluAsync({ x: gateUp });
 */
export function swiGluAsync(options: SwiGluOptions, asyncOptions: AsyncKernelOptions = {}): Promise<Tensor> {
  return runOpAsync(() => swiGluOp(options), asyncOptions);
}

export interface SwiGluOptions {
  /** [..., 2·inner]: each row's gate, then its up. */
  x: Tensor;
  /** [..., inner]. */
  out?: Tensor;
}

function swiGluOp(options: SwiGluOptions): PreparedOp<"swiGlu", Tensor> {
  const o = readOptions("swiGlu", options, ["x", "out"]);
  const x = requireTensor("x", o.x),
    givenOut = optionalTensor("swiGlu", "out", o.out);
  const width = x.shape[x.shape.length - 1];
  if (width % 2) throw new RangeError(`swiGlu: x's last dimension holds [gate, up] and must be even, got ${width}`);
  const outputs = new Outputs();
  const out = outputs.take(givenOut, () => Tensor.empty([...x.shape.slice(0, -1), width / 2], x.dtype, x.device));
  return { op: "swiGlu", args: { x: x.handle, out: out.handle }, outputs, result: out };
}

/**
 * Rows of an embedding table: out[t] = table[ids[t]].
 * @example const hidden = kernels.embedding({ ids, table: embedTokens, dtype: "f32" });
 */
export function embedding(options: EmbeddingOptions): Tensor {
  return runOp(embeddingOp(options));
}

/**
 * `embedding` off the event loop.
 * @example const hidden = await kernels.embeddingAsync({ ids, table: embedTokens, dtype: "f32" });
 */
export function embeddingAsync(options: EmbeddingOptions, asyncOptions: AsyncKernelOptions = {}): Promise<Tensor> {
  return runOpAsync(() => embeddingOp(options), asyncOptions);
}

export interface EmbeddingOptions {
  /** i32 [tokens], each a row of the table. */
  ids: Tensor;
  /** [vocab, hidden]. */
  table: Tensor;
  /** The output's dtype where `out` is not given (default: the table's). */
  dtype?: Tensor["dtype"];
  /** [tokens, hidden]. */
  out?: Tensor;
}

function embeddingOp(options: EmbeddingOptions): PreparedOp<"embedding", Tensor> {
  const o = readOptions("embedding", options, ["ids", "table", "dtype", "out"]);
  const ids = requireTensor("ids", o.ids),
    table = requireTensor("table", o.table),
    givenOut = optionalTensor("embedding", "out", o.out);
  const outputs = new Outputs();
  if (givenOut && o.dtype !== undefined && o.dtype !== givenOut.dtype)
    throw new TypeError(`embedding: dtype is ${show(o.dtype)} but out is ${givenOut.dtype}; give one of them, or both alike`);
  const out = outputs.take(givenOut, () => Tensor.empty([ids.shape[0], table.shape[1]], o.dtype ?? table.dtype, table.device));
  return { op: "embedding", args: { ids: ids.handle, table: table.handle, out: out.handle }, outputs, result: out };
}

/**
 * Index of the largest value of each row of logits [rows, vocab] (f32, f16 or bf16), as
 * torch.argmax picks it: NaN counts as larger than any number, and among equal values (NaNs
 * included) the lowest index wins. The CPU and CUDA answers are identical.
 * @example const next = kernels.argmax({ logits }).toArray();
 */
export function argmax(options: ArgmaxOptions): Tensor {
  return runOp(argmaxOp(options));
}

/**
 * `argmax` off the event loop.
 * @example const next = (await kernels.argmaxAsync({ logits })).toArray();
 */
export function argmaxAsync(options: ArgmaxOptions, asyncOptions: AsyncKernelOptions = {}): Promise<Tensor> {
  return runOpAsync(() => argmaxOp(options), asyncOptions);
}

export interface ArgmaxOptions {
  /** [rows, vocab]. */
  logits: Tensor;
  /** i32 [rows]. */
  out?: Tensor;
}

function argmaxOp(options: ArgmaxOptions): PreparedOp<"argmax", Tensor> {
  const o = readOptions("argmax", options, ["logits", "out"]);
  const logits = requireTensor("logits", o.logits),
    givenOut = optionalTensor("argmax", "out", o.out);
  const outputs = new Outputs();
  const out = outputs.take(givenOut, () => Tensor.empty([logits.shape[0]], "i32", logits.device));
  return { op: "argmax", args: { logits: logits.handle, out: out.handle }, outputs, result: out };
}

/**
 * The log-probability of a given token in each row of logits [rows, vocab] (f32, f16 or bf16):
 * out[r] = logits[r, targets[r]] − log Σ_j exp(logits[r, j]), f32 [rows]. Scoring a continuation
 * needs only these, not the rows. Summed in float64 on the CPU and float32 on CUDA; a row with a
 * NaN gives NaN. targets: i32 [rows], each within the vocabulary.
 * @example
 * const lp = kernels.tokenLogprobs({ logits, targets: Tensor.from(Int32Array.of(17, 4), [2], { device }) });
 * lp.toFloat32Array(); // [log p(17 | row 0), log p(4 | row 1)]
 */
export function tokenLogprobs(options: TokenLogprobsOptions): Tensor {
  return runOp(tokenLogprobsOp(options));
}

/**
 * `tokenLogprobs` off the event loop.
 * @example const lp = await kernels.tokenLogprobsAsync({ logits, targets }, { signal });
 */
export function tokenLogprobsAsync(options: TokenLogprobsOptions, asyncOptions: AsyncKernelOptions = {}): Promise<Tensor> {
  return runOpAsync(() => tokenLogprobsOp(options), asyncOptions);
}

export interface TokenLogprobsOptions {
  /** [rows, vocab]. */
  logits: Tensor;
  /** i32 [rows]. */
  targets: Tensor;
  /** f32 [rows]. */
  out?: Tensor;
}

function tokenLogprobsOp(options: TokenLogprobsOptions): PreparedOp<"tokenLogprobs", Tensor> {
  const o = readOptions("tokenLogprobs", options, ["logits", "targets", "out"]);
  const logits = requireTensor("logits", o.logits),
    targets = requireTensor("targets", o.targets),
    givenOut = optionalTensor("tokenLogprobs", "out", o.out);
  const outputs = new Outputs();
  const out = outputs.take(givenOut, () => Tensor.empty([logits.shape[0]], "f32", logits.device));
  return { op: "tokenLogprobs", args: { logits: logits.handle, targets: targets.handle, out: out.handle }, outputs, result: out };
}

/** Per row: the tokens whose logits are >= the k-th largest, and the row's softmax mass. */
export interface TopCandidates {
  /** i32 [rows, min(capacity, vocab)]: indices of those logits, in no particular order (the first count[r], up to that width). */
  ids: Tensor;
  /** f32 [rows, min(capacity, vocab)]: their values. */
  scores: Tensor;
  /** i32 [rows]: how many logits are >= the k-th largest (k, more on ties; more than capacity means not all were stored). */
  count: Tensor;
  /** f32 [rows]: the largest logit (-Infinity if the row is all NaN). */
  max: Tensor;
  /** f32 [rows]: Σ exp((logit − max) / temperature) over the row (NaN logits left out). */
  mass: Tensor;
}

/**
 * The k most likely tokens of each row of logits (ties at the k-th value included) and the row's
 * softmax mass at its temperature, so that topK / topP sampling needs only a few values per row
 * on the host instead of the whole row. Logits f32, f16 or bf16 [rows, vocab]; temperature f32
 * [rows], each > 0 (not checked); capacity (default 2k) bounds how many candidates per row are stored, and is
 * cut to the vocabulary, which no row's candidates outnumber (so a "no limit" capacity allocates
 * nothing huge).
 * @example
 * const c = kernels.topCandidates({ logits, temperature: Tensor.from(Float32Array.of(0.7), [1], { device }), k: 64 });
 * const count = c.count.toArray()[0];   // >= 64; if <= capacity, c.ids/c.scores hold them all
 */
export function topCandidates(options: TopCandidatesOptions): TopCandidates {
  return runOp(topCandidatesOp(options));
}

/**
 * `topCandidates` off the event loop.
 * @example const c = await kernels.topCandidatesAsync({ logits, temperature, k: 64 });
 */
export function topCandidatesAsync(options: TopCandidatesOptions, asyncOptions: AsyncKernelOptions = {}): Promise<TopCandidates> {
  return runOpAsync(() => topCandidatesOp(options), asyncOptions);
}

export interface TopCandidatesOptions {
  /** [rows, vocab]. */
  logits: Tensor;
  /** f32 [rows], each > 0 (not checked: another value gives meaningless scores and mass). */
  temperature: Tensor;
  k: number;
  /** Candidates stored per row (default 2k). */
  capacity?: number;
}

function topCandidatesOp(options: TopCandidatesOptions): PreparedOp<"topCandidates", TopCandidates> {
  const o = readOptions("topCandidates", options, ["logits", "temperature", "k", "capacity"]);
  const logits = requireTensor("logits", o.logits),
    temperature = requireTensor("temperature", o.temperature);
  if (logits.shape.length !== 2) throw new RangeError(`topCandidates: logits must be [rows, vocab], got [${logits.shape.join(", ")}]`);
  // Checked before the default capacity is worked out from it (a BigInt k cannot be doubled).
  if (!Number.isSafeInteger(o.k) || o.k < 1) throw new RangeError(`topCandidates: k must be an integer >= 1, got ${show(o.k)}`);
  const maxCapacity = 2 ** 31 - 1;
  const capacity = o.capacity ?? Math.min(2 * o.k, maxCapacity);
  if (!Number.isInteger(capacity) || capacity < 1 || !(capacity >= o.k) || capacity > maxCapacity)
    throw new RangeError(`topCandidates: capacity must be an integer >= k (${o.k}) and <= ${maxCapacity}, got ${show(capacity)}`);
  const [rows, vocab] = logits.shape,
    device = logits.device;
  const width = Math.min(capacity, vocab);
  const outputs = new Outputs();
  const make = (shape: number[], dtype: "i32" | "f32") => outputs.take(undefined, () => Tensor.empty(shape, dtype, device));
  let c: TopCandidates;
  try {
    c = {
      ids: make([rows, width], "i32"),
      scores: make([rows, width], "f32"),
      count: make([rows], "i32"),
      max: make([rows], "f32"),
      mass: make([rows], "f32"),
    };
  } catch (err) {
    outputs.disposeMade();
    throw err;
  }
  const args = {
    logits: logits.handle,
    temperature: temperature.handle,
    k: o.k,
    ids: c.ids.handle,
    scores: c.scores.handle,
    count: c.count.handle,
    max: c.max.handle,
    mass: c.mass.handle,
  };
  return { op: "topCandidates", args, outputs, result: c };
}

/**
 * transformers' repetition penalty, in place: for each row r, each token in ids[offsets[r] ..
 * offsets[r+1]) (distinct within the row) has its logit x replaced by x / penalty[r] if x > 0,
 * else x · penalty[r], rounded to the logits' dtype. ids and offsets i32, penalty f32 [rows].
 * @example
 * // row 0 has seen tokens 5 and 9, row 1 nothing
 * kernels.repetitionPenalty({ logits, ids: Tensor.from(Int32Array.of(5, 9), [2], { device }),
 *   offsets: Tensor.from(Int32Array.of(0, 2, 2), [3], { device }), penalty: Tensor.from(Float32Array.of(1.3, 1.3), [2], { device }) });
 */
export function repetitionPenalty(options: RepetitionPenaltyOptions): void {
  runOp(repetitionPenaltyOp(options));
}

/**
 * `repetitionPenalty` off the event loop.
 * @example await kernels.repetitionPenaltyAsync({ logits, ids, offsets, penalty });
 */
export function repetitionPenaltyAsync(options: RepetitionPenaltyOptions, asyncOptions: AsyncKernelOptions = {}): Promise<void> {
  return runOpAsync(() => repetitionPenaltyOp(options), asyncOptions);
}

export interface RepetitionPenaltyOptions {
  /** [rows, vocab], changed in place. */
  logits: Tensor;
  /** i32: each row's seen tokens, row after row, distinct within a row. */
  ids: Tensor;
  /** i32 [rows + 1]: row r's ids are ids[offsets[r] .. offsets[r + 1]). */
  offsets: Tensor;
  /** f32 [rows], each > 0 (not checked: another value gives meaningless logits). */
  penalty: Tensor;
}

function repetitionPenaltyOp(options: RepetitionPenaltyOptions): PreparedOp<"repetitionPenalty", void> {
  const o = readOptions("repetitionPenalty", options, ["logits", "ids", "offsets", "penalty"]);
  const logits = requireTensor("logits", o.logits),
    ids = requireTensor("ids", o.ids);
  const offsets = requireTensor("offsets", o.offsets),
    penalty = requireTensor("penalty", o.penalty);
  const args = { logits: logits.handle, ids: ids.handle, offsets: offsets.handle, penalty: penalty.handle };
  return { op: "repetitionPenalty", args, outputs: new Outputs(), result: undefined };
}

/**
 * Which GEMM the CUDA backend's linear uses for a choice (LIGHTTRANSFER_GEMM, else "auto", when
 * not given): "cublasLt", "cublas" or "fallback", or "gemv" for "gemv-only"; with "gemv" or
 * "auto" the detail says which products run on the small-batch GEMV. Null without CUDA.
 * @example
 * console.log(kernels.gemmBackend()?.detail); // what a whole model's linears run on
 * console.log(kernels.gemmBackend("gemv")?.detail); // "...; 1 to 4 rows on the small-batch GEMV"
 */
export function gemmBackend(gemm?: GemmChoice): GemmBackendInfo | null {
  return addon().gemmBackend(readGemmChoice("gemmBackend", gemm));
}
