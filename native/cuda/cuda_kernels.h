// Entry points of the CUDA kernels, by op family. Each takes the same plain params struct as its
// CPU twin (native/core/attention_params.h, model_params.h), with device pointers, and enqueues
// on `stream`. They throw lt::Error when a launch fails or a shape is outside what the kernel
// supports.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <string>

#include "core/attention_params.h"
#include "core/model_params.h"

namespace lt::cuda {

// ----------------------------------------------------------------------------- attention
// Flash prefill (tensor cores, online softmax); optional streaming mask with tile skipping,
// LSE, and the fused lazy ratio. f16/bf16, d in {64, 128}.
void prefillAttention(const PrefillAttentionParams& p, cudaStream_t stream);

// Paged decode attention, split-KV for long caches. `workspace` must hold
// decodeAttentionWorkspaceBytes(p, smCount) bytes (may be 0).
size_t decodeAttentionWorkspaceBytes(const DecodeAttentionParams& p, int smCount);
void decodeAttention(const DecodeAttentionParams& p, void* workspace, size_t workspaceBytes, int smCount,
                     cudaStream_t stream);

// ----------------------------------------------------------------------------- kv cache
void appendKv(const AppendKvParams& p, cudaStream_t stream);

// `scratch` must hold cutToStreamingScratchBytes(p) bytes.
size_t cutToStreamingScratchBytes(const CutToStreamingParams& p);
void cutToStreaming(const CutToStreamingParams& p, void* scratch, cudaStream_t stream);

// Contiguous copy of the given pool slots (gather_kv.cu).
void gatherKv(const GatherKvParams& p, cudaStream_t stream);

// RoPE on the q and k heads of a stacked q|k|v projection, k and v written to the pool
// (rope_append.cu).
void ropeAppendKv(const RopeAppendKvParams& p, cudaStream_t stream);

// ----------------------------------------------------------------------------- lazy ratio
void lazyRatio(const LazyRatioParams& p, cudaStream_t stream);

// ----------------------------------------------------------------------------- layer ops
// Linear runs on cuBLAS(Lt), opened at run time (dlopen) so the build needs no cuBLAS headers
// and a machine without cuBLAS gets an in-house tensor-core GEMM instead of a crash (gemm.cu);
// the gemv choice runs products of 1 to 4 rows on the small-batch GEMV (gemv.cu), auto only those
// it wins (gemm.cu says which).
// gemmRequest: a call's choice ("auto", "cublasLt", "gemv", "gemv-only", "cublas", "fallback"),
// or LIGHTTRANSFER_GEMM when the call makes none (given empty), or auto; an Error otherwise.
enum class GemmRequest { Auto, Library, SmallBatch, SmallBatchOnly, Blas, Fallback };
GemmRequest gemmRequest(const std::string& given);
// Which GEMM linear uses on this machine for a request: "cublasLt", "cublas" or "fallback"
// ("gemv" for gemv-only), and why.
struct GemmBackend {
  std::string name;
  std::string detail;
};
GemmBackend gemmBackend(GemmRequest request);

// How linear runs a call, decided once: the backend asked for, whether the small-batch GEMV takes
// the call, whether the input transform runs first as a kernel of its own, and the device scratch
// that needs for the transformed input. Plan, allocate the scratch, run.
struct LinearPlan {
  GemmRequest request = GemmRequest::Auto;
  bool gemv = false;
  bool separateTransform = false;  // the input transform as its own kernel, into scratch at 0
  bool separateOutput = false;     // the product into scratch at productOffset, then the output's kernel
  size_t productOffset = 0;
  size_t scratchBytes = 0;
};
LinearPlan planLinear(const LinearParams& p, GemmRequest request);
void linear(const LinearParams& p, const LinearPlan& plan, void* scratch, cudaStream_t stream);
// gemv.cu: whether the small-batch GEMV takes p (1 to kSmallBatchLinearMaxRows bf16/f16 rows,
// k % 8 == 0, x, w and norm 16-byte aligned, y apart from x), whether it also does p's input
// transform (else that runs first, as its own kernel) and its output transform (else the product
// goes to scratch and that kernel follows), and the GEMV itself.
constexpr int kSmallBatchLinearMaxRows = 4;
bool smallBatchLinearApplies(const LinearParams& p);
bool smallBatchLinearFusesInput(const LinearParams& p);
bool smallBatchLinearFusesOutput(const LinearParams& p);
void smallBatchLinear(const LinearParams& p, cudaStream_t stream);
// layer_ops.cu
void rmsNorm(const RmsNormParams& p, cudaStream_t stream);
void rope(const RopeParams& p, cudaStream_t stream);
void swiGlu(const SwiGluParams& p, cudaStream_t stream);
void embedding(const EmbeddingParams& p, cudaStream_t stream);

// ----------------------------------------------------------------------------- sampling
// sampling.cu: the greedy argmax; the k largest logits of each row, ties included, with the
// row's max and softmax mass; transformers' repetition penalty on each row's listed tokens, in
// place.
void argmax(const ArgmaxParams& p, cudaStream_t stream);
void topCandidates(const TopCandidatesParams& p, cudaStream_t stream);
void tokenLogprobs(const TokenLogprobsParams& p, cudaStream_t stream);
void repetitionPenalty(const RepetitionPenaltyParams& p, cudaStream_t stream);

}  // namespace lt::cuda
