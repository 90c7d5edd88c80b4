// One plain struct per model-operation call (DESIGN.md section 5, "model ops"). As for the
// attention kernels, the addon validates and fills these; CPU and CUDA kernels trust them.
// Rows are tokens; all tensors contiguous and row-major.
#pragma once
#include <cstdint>

#include "dtype.h"

namespace lt {

// Rotary embedding and the KV-cache append fused over the output of one stacked q|k|v
// projection (a decode step's attention input): per token t, qkv holds hq query heads, then
// hkv key heads, then hkv value heads, each of d elements. The query heads are rotated into
// q [tokens, hq, d]; the key heads are rotated and, with the value heads, written to pool
// slot slots[t] = page · pageSize + offset of the K/V pool [numPages, pageSize, hkv, d] (-1
// writes nothing for that token). The same results as splitting, RopeParams, then
// AppendKvParams. qkv, q and the pool share `dtype`.
struct RopeAppendKvParams {
  DType dtype = DType::F32;
  const void* qkv = nullptr;  // [tokens, (hq + 2 hkv) d]
  void* q = nullptr;          // [tokens, hq, d]
  void* kPages = nullptr;
  void* vPages = nullptr;
  const int32_t* positions = nullptr;  // [tokens]
  const int32_t* slots = nullptr;      // [tokens]
  const float* invFreq = nullptr;      // [d / 2]
  int32_t tokens = 0, hq = 0, hkv = 0, d = 0, pageSize = 0, numPages = 0;
};

// What linear does to each row of x before the product: nothing, RMSNorm (row / sqrt(mean(row²)
// + eps) · norm, norm [k]), or SwiGLU (x's rows hold [gate | up], 2k columns, and the product
// takes silu(gate) · up). The transformed row is rounded to the activation dtype, as the
// separate rmsNorm or swiGlu op would have stored it. Fusing them lets a decode step read its
// activations once and launch one kernel where it launched two.
enum class LinearInput : int32_t { Plain, RmsNorm, SwiGlu };

// What linear does to the product: nothing; SwiGLU, where w's rows hold [gate | up] (n = 2 ·
// inner) and y [m, inner] = silu(gate) · up; or RoPE and the K/V append, where w's rows are the
// stacked q|k|v heads (n = (hq + 2 hkv) d, m = tokens) and the product goes through
// ropeAppendKv (LinearParams::rope, its qkv the product): y is rope.q. Either way each element of
// the product (+ bias) is rounded to the activation dtype first, so the result is what storing
// the product and then running the separate op gives. Not with accumulate. Fused into the
// small-batch GEMV's epilogue, each spares a decode step one kernel per layer without redoing any
// arithmetic (each output is made once).
enum class LinearOutput : int32_t { Plain, SwiGlu, RopeAppendKv };

// y[m, n] = input(x)[m, k] · w[n, k]ᵀ (+ bias[n]), or with `accumulate` y += (the same): a Hugging
// Face Linear layer, weights as stored, optionally with the norm before it and the residual add
// after it. x and y share the activation dtype; w, bias and norm share the weight dtype (they
// may differ: f32 activations over bf16 weights on the CPU). Accumulation is f32, and an
// accumulated y is rounded once (on cuBLAS a split-K product may round its partial sums too).
// y may not overlap x when input or accumulate is set. With output SwiGlu, y is [m, n / 2].
struct LinearParams {
  DType xType = DType::F32;  // x and y
  DType wType = DType::F32;  // w, bias and norm
  const void* x = nullptr;   // [m, k], or [m, 2k] for SwiGlu
  const void* w = nullptr;
  const void* bias = nullptr;  // optional [n]
  void* y = nullptr;
  int32_t m = 0, n = 0, k = 0;
  LinearInput input = LinearInput::Plain;
  const void* norm = nullptr;  // [k], for RmsNorm
  float eps = 1e-5f;
  LinearOutput output = LinearOutput::Plain;
  RopeAppendKvParams rope;  // for RopeAppendKv: all but qkv (the product)
  bool accumulate = false;
  // No kernel writes w while this call may overlap the kernels ahead of it (a model's loaded
  // weights): the small-batch GEMV on CUDA may then read w before it waits for them.
  bool constantWeight = false;
};

// y = x / sqrt(mean(x²) + eps) * weight, per row of `dim`. When `residual` is set, it is first
// updated in place, residual += x, and the norm is taken of the new residual (the fused
// "add then norm" of a pre-norm decoder block); y may not alias x then.
struct RmsNormParams {
  DType xType = DType::F32;  // x, y, residual
  DType wType = DType::F32;  // weight
  const void* x = nullptr;
  void* residual = nullptr;  // optional [rows, dim]
  const void* weight = nullptr;
  void* y = nullptr;
  int32_t rows = 0, dim = 0;
  float eps = 1e-5f;
};

// Rotary embedding in place on q [tokens, hq, d] and k [tokens, hkv, d], rotate-half layout
// (element i pairs with i + d/2, as Hugging Face Llama/Mistral/Qwen2 do):
//   x'[i]       = x[i] cos(θ) - x[i + d/2] sin(θ)
//   x'[i + d/2] = x[i + d/2] cos(θ) + x[i] sin(θ),   θ = positions[t] · invFreq[i]
// invFreq [d/2] is computed by the caller (default, llama3 or linear scaling are policy).
struct RopeParams {
  DType dtype = DType::F32;
  void* q = nullptr;
  void* k = nullptr;
  const int32_t* positions = nullptr;  // [tokens]
  const float* invFreq = nullptr;      // [d / 2]
  int32_t tokens = 0, hq = 0, hkv = 0, d = 0;
};

// y[r, j] = silu(x[r, j]) * x[r, inner + j] for j < inner: gate and up projections computed as one
// Linear with their weights stacked ([gate; up]), x is [rows, 2 * inner], y is [rows, inner].
struct SwiGluParams {
  DType dtype = DType::F32;
  const void* x = nullptr;
  void* y = nullptr;
  int32_t rows = 0, inner = 0;
};

// y[t] = table[ids[t]] for t < tokens; table [vocab, dim] in tableType, y in yType.
struct EmbeddingParams {
  DType tableType = DType::F32;
  DType yType = DType::F32;
  const int32_t* ids = nullptr;
  const void* table = nullptr;
  void* y = nullptr;
  int32_t tokens = 0, dim = 0, vocab = 0;
};

// out[r] = the index of the largest of logits[r, 0..vocab), as torch.argmax picks it: NaN counts
// as larger than any number, equal values (+0 and -0 among them, NaNs among themselves) go to
// the lowest index. Greedy decoding's next token, so the CPU and CUDA answers must be identical.
struct ArgmaxParams {
  DType dtype = DType::F32;
  const void* logits = nullptr;  // [rows, vocab]
  int32_t* out = nullptr;        // [rows]
  int32_t rows = 0, vocab = 0;
};

// out[r] = log softmax(logits[r, 0..vocab))[targets[r]] = logits[r, t] − log Σ_j exp(logits[r, j]):
// the log-probability of a given next token, what scoring a continuation needs without reading
// whole rows back. Summed in f64 on the CPU and in f32 on CUDA (relative error ~1e-6); a row
// holding a NaN gives NaN. Targets are checked on the host: 0 <= targets[r] < vocab.
struct TokenLogprobsParams {
  DType dtype = DType::F32;
  const void* logits = nullptr;      // [rows, vocab]
  const int32_t* targets = nullptr;  // [rows]
  float* out = nullptr;              // [rows]
  int32_t rows = 0, vocab = 0;
};

// The most likely tokens of each row of logits and the row's softmax mass, so that sampling with
// topK / topP can run on the host without reading whole rows back. Per row r, with T =
// temperature[r] and NaN logits ignored:
//   max[r]   = the largest logit (-inf when the row has none);
//   mass[r]  = Σ_j exp((logits[r, j] − max[r]) / T) (0 when max[r] is -inf);
//   count[r] = how many logits are >= the k-th largest: k, more when several equal the k-th,
//              fewer when the row has fewer than k logits that are not NaN;
//   ids[r, i], scores[r, i] for i < min(count[r], capacity): those logits' indices and values, in
//              no particular order. When count[r] > capacity, which ones are stored is unspecified
//              and the caller falls back to the whole row.
// Mass is accumulated in f64 on the CPU and f32 on CUDA; everything else is exact and identical.
struct TopCandidatesParams {
  DType dtype = DType::F32;
  const void* logits = nullptr;                      // [rows, vocab]
  const float* temperature = nullptr;                // [rows], > 0
  int32_t* ids = nullptr;                            // [rows, capacity]
  float* scores = nullptr;                           // [rows, capacity]
  int32_t* count = nullptr;                          // [rows]
  float* max = nullptr;                              // [rows]
  float* mass = nullptr;                             // [rows]
  int32_t rows = 0, vocab = 0, k = 0, capacity = 0;  // 1 <= k <= capacity
};

// transformers' repetition penalty, in place: for each row r and each token id in
// ids[offsets[r] .. offsets[r+1]) (distinct within a row), logits[r, id] becomes x / penalty[r]
// when x > 0, else x · penalty[r], computed in f32 with IEEE division and rounded back to the
// logits' dtype, so the CPU and CUDA results are identical (subnormal logits aside: CUDA flushes
// them to zero; a NaN stays NaN, though not necessarily with the same bits).
struct RepetitionPenaltyParams {
  DType dtype = DType::F32;
  void* logits = nullptr;            // [rows, vocab]
  const int32_t* ids = nullptr;      // [offsets[rows]]
  const int32_t* offsets = nullptr;  // [rows + 1], offsets[0] = 0, nondecreasing
  const float* penalty = nullptr;    // [rows], > 0
  int32_t rows = 0, vocab = 0;
};

}  // namespace lt
