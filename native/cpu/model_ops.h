// CPU model operations; also the references for the CUDA ones in the GPU tests.
#pragma once
#include "core/model_params.h"

namespace lt::cpu {

void linear(const LinearParams& p);
void rmsNorm(const RmsNormParams& p);
void rope(const RopeParams& p);
void swiGlu(const SwiGluParams& p);
void embedding(const EmbeddingParams& p);
void argmax(const ArgmaxParams& p);
// sampling.cpp
void topCandidates(const TopCandidatesParams& p);
void repetitionPenalty(const RepetitionPenaltyParams& p);
// Composed from rope and appendKv over the split q|k|v rows (rope_append.cpp).
void ropeAppendKv(const RopeAppendKvParams& p);

}  // namespace lt::cpu
