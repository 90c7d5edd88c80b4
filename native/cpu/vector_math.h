// The inner loops every CPU attention kernel spends its time in (vector_math.cpp).
#pragma once
#include <cstdint>

namespace lt::cpu {

float dot(const float* a, const float* b, int32_t n);
// y += alpha * x
void axpy(float alpha, const float* x, float* y, int32_t n);

}  // namespace lt::cpu
