// Reference-quality CPU kernels, by op family: the same params structs as the CUDA kernels
// (native/core/attention_params.h, model_params.h), multi-threaded over independent rows, f32
// accumulation. They are also the references the GPU tests use.
#pragma once
#include "core/attention_params.h"
#include "core/model_params.h"

namespace lt::cpu {

// Attention (attention_prefill.cpp, attention_decode.cpp).
void prefillAttention(const PrefillAttentionParams& p);
void decodeAttention(const DecodeAttentionParams& p);

// KV cache (kv_cache.cpp); ropeAppendKv is composed from rope and appendKv over the split
// q|k|v rows (rope_append.cpp).
void appendKv(const AppendKvParams& p);
void cutToStreaming(const CutToStreamingParams& p);
void gatherKv(const GatherKvParams& p);
void ropeAppendKv(const RopeAppendKvParams& p);

// Lazy ratio (lazy_ratio.cpp).
void lazyRatio(const LazyRatioParams& p);

// Layer ops (layer_ops.cpp).
void linear(const LinearParams& p);
void rmsNorm(const RmsNormParams& p);
void rope(const RopeParams& p);
void swiGlu(const SwiGluParams& p);
void embedding(const EmbeddingParams& p);

// Sampling (sampling.cpp).
void argmax(const ArgmaxParams& p);
void topCandidates(const TopCandidatesParams& p);
void tokenLogprobs(const TokenLogprobsParams& p);
void repetitionPenalty(const RepetitionPenaltyParams& p);

}  // namespace lt::cpu
