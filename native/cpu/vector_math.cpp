// Built twice (AVX2+FMA and baseline x86-64) and picked at load time, so one binary is fast on
// new CPUs and still runs on old ones; `omp simd` lets the compiler reassociate the reductions
// so they vectorise (the build passes -fopenmp-simd; no OpenMP runtime is linked).
#include "vector_math.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LT_MULTIVERSION __attribute__((target_clones("arch=haswell", "default")))
#else
#define LT_MULTIVERSION
#endif

namespace lt::cpu {

LT_MULTIVERSION float dot(const float* a, const float* b, int32_t n) {
  float acc = 0.f;
#pragma omp simd reduction(+ : acc)
  for (int32_t i = 0; i < n; i++) acc += a[i] * b[i];
  return acc;
}

LT_MULTIVERSION void axpy(float alpha, const float* x, float* y, int32_t n) {
#pragma omp simd
  for (int32_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

}  // namespace lt::cpu
