// CUDA model operations (params in native/core/model_params.h), enqueued on `stream`.
// Linear runs on cuBLAS(Lt), opened at run time (dlopen) so the build needs no cuBLAS headers
// and a machine without cuBLAS gets an in-house tensor-core GEMM instead of a crash.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "core/model_params.h"

namespace lt::cuda {

// Which GEMM Linear uses on this machine: "cublasLt", "cublas" or "fallback", and why.
struct GemmBackend {
  std::string name;
  std::string detail;
};
GemmBackend gemmBackend();

void linear(const LinearParams& p, cudaStream_t stream);
void rmsNorm(const RmsNormParams& p, cudaStream_t stream);
void rope(const RopeParams& p, cudaStream_t stream);
void swiGlu(const SwiGluParams& p, cudaStream_t stream);
void embedding(const EmbeddingParams& p, cudaStream_t stream);
void argmax(const ArgmaxParams& p, cudaStream_t stream);
// The k largest logits of each row, ties included, with the row's max and softmax mass (sampling.cu).
void topCandidates(const TopCandidatesParams& p, cudaStream_t stream);
// transformers' repetition penalty on each row's listed tokens, in place (sampling.cu).
void repetitionPenalty(const RepetitionPenaltyParams& p, cudaStream_t stream);
// RoPE on the q and k heads of a stacked q|k|v projection, k and v written to the pool
// (rope_append.cu).
void ropeAppendKv(const RopeAppendKvParams& p, cudaStream_t stream);

}  // namespace lt::cuda
