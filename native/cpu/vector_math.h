// The inner loops every CPU attention kernel spends its time in (vector_math.cpp).
#pragma once
#include <cstdint>

namespace lt::cpu {

float dot(const float* a, const float* b, int32_t n);

// Blocks of dot products: each x and w value is loaded once for several products, and the
// independent sums keep the FMA units busy, which one dot() per pair does not. Every product in
// a block is computed by the same arithmetic, so a result does not depend on which rows share
// its block (a batch gives what each of its sequences gives alone).
// out[i * 2 + j] = x[i] · w[j], n long (attention: four keys against two query heads)
void dotBlock4x2(const float* const x[4], const float* const w[2], int32_t n, float out[8]);
// out[j] = x · w[j], n long (Linear: one input row against eight weight rows; also fast for one row)
void dotBlock1x8(const float* x, const float* const w[8], int32_t n, float out[8]);
// y += alpha * x
void axpy(float alpha, const float* x, float* y, int32_t n);
// y += Σ_i alpha[i] * x[i] over four rows, y loaded and stored once
void axpy4(const float alpha[4], const float* const x[4], float* y, int32_t n);

}  // namespace lt::cpu
