// Reference-quality CPU kernels: the same params structs as the CUDA kernels, multi-threaded
// over independent rows, f32 accumulation. They are also the references the GPU tests use.
#pragma once
#include "core/attention_params.h"

namespace lt::cpu {

void prefillAttention(const PrefillAttentionParams& p);
void decodeAttention(const DecodeAttentionParams& p);
void appendKv(const AppendKvParams& p);
void cutToStreaming(const CutToStreamingParams& p);
void gatherKv(const GatherKvParams& p);
void lazyRatio(const LazyRatioParams& p);

}  // namespace lt::cpu
