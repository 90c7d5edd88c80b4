// Entry points of the CUDA kernels. Each takes the same plain params struct as its CPU
// twin (native/core/attention_params.h), with device pointers, and enqueues on `stream`.
// They throw lt::Error when a launch fails or a shape is outside what the kernel supports.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

#include "core/attention_params.h"

namespace lt::cuda {

// Flash prefill (tensor cores, online softmax); optional streaming mask with tile skipping,
// LSE, and the fused lazy ratio. f16/bf16, d in {64, 128}.
void prefillAttention(const PrefillAttentionParams& p, cudaStream_t stream);

// Paged decode attention, split-KV for long caches. `workspace` must hold
// decodeAttentionWorkspaceBytes(p, smCount) bytes (may be 0).
size_t decodeAttentionWorkspaceBytes(const DecodeAttentionParams& p, int smCount);
void decodeAttention(const DecodeAttentionParams& p, void* workspace, size_t workspaceBytes, int smCount,
                     cudaStream_t stream);

void appendKv(const AppendKvParams& p, cudaStream_t stream);

// `scratch` must hold cutToStreamingScratchBytes(p) bytes.
size_t cutToStreamingScratchBytes(const CutToStreamingParams& p);
void cutToStreaming(const CutToStreamingParams& p, void* scratch, cudaStream_t stream);

void lazyRatio(const LazyRatioParams& p, cudaStream_t stream);

// Contiguous copy of the given pool slots (gather_kv.cu).
void gatherKv(const GatherKvParams& p, cudaStream_t stream);

}  // namespace lt::cuda
