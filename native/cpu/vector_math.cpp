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

LT_MULTIVERSION void dotBlock4x2(const float* const x[4], const float* const w[2], int32_t n, float out[8]) {
  const float *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3], *w0 = w[0], *w1 = w[1];
  float a00 = 0.f, a01 = 0.f, a10 = 0.f, a11 = 0.f, a20 = 0.f, a21 = 0.f, a30 = 0.f, a31 = 0.f;
#pragma omp simd reduction(+ : a00, a01, a10, a11, a20, a21, a30, a31)
  for (int32_t i = 0; i < n; i++) {
    const float u = w0[i], v = w1[i];
    a00 += x0[i] * u;
    a01 += x0[i] * v;
    a10 += x1[i] * u;
    a11 += x1[i] * v;
    a20 += x2[i] * u;
    a21 += x2[i] * v;
    a30 += x3[i] * u;
    a31 += x3[i] * v;
  }
  out[0] = a00, out[1] = a01, out[2] = a10, out[3] = a11, out[4] = a20, out[5] = a21, out[6] = a30, out[7] = a31;
}

LT_MULTIVERSION void dotBlock1x8(const float* x, const float* const w[8], int32_t n, float out[8]) {
  const float *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3], *w4 = w[4], *w5 = w[5], *w6 = w[6], *w7 = w[7];
  float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f, a4 = 0.f, a5 = 0.f, a6 = 0.f, a7 = 0.f;
#pragma omp simd reduction(+ : a0, a1, a2, a3, a4, a5, a6, a7)
  for (int32_t i = 0; i < n; i++) {
    const float u = x[i];
    a0 += u * w0[i];
    a1 += u * w1[i];
    a2 += u * w2[i];
    a3 += u * w3[i];
    a4 += u * w4[i];
    a5 += u * w5[i];
    a6 += u * w6[i];
    a7 += u * w7[i];
  }
  out[0] = a0, out[1] = a1, out[2] = a2, out[3] = a3, out[4] = a4, out[5] = a5, out[6] = a6, out[7] = a7;
}

LT_MULTIVERSION void axpy(float alpha, const float* x, float* y, int32_t n) {
#pragma omp simd
  for (int32_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

LT_MULTIVERSION void axpy4(const float alpha[4], const float* const x[4], float* y, int32_t n) {
  const float a0 = alpha[0], a1 = alpha[1], a2 = alpha[2], a3 = alpha[3];
  const float *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
#pragma omp simd
  for (int32_t i = 0; i < n; i++) y[i] += a0 * x0[i] + a1 * x1[i] + a2 * x2[i] + a3 * x3[i];
}

}  // namespace lt::cpu
