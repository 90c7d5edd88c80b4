// The cos/sin of one token's rotary angles and the rotation by them, shared by the RoPE kernels
// (ropeKernel in layer_ops.cu, ropeAppendKvKernel in rope_append.cu, the RoPE + append epilogue
// of gemvKernel in gemv.cu), so that every path turns a pair to the same bits.
#pragma once
#include <cuda_runtime.h>

namespace lt::cuda {

// cos and sin of one rotary angle, pos · invFreq. The angle is rounded to f32 exactly as
// float(pos) * inv_freq in PyTorch (no FMA to contract); cos/sin of it are taken in double,
// which --use_fast_math leaves alone and which stays accurate for any magnitude.
__device__ inline void ropeCosSinOf(float pos, float invFreq, float& co, float& si) {
  const float angle = __fmul_rn(pos, invFreq);
  double s, c;
  sincos(double(angle), &s, &c);
  co = float(c);
  si = float(s);
}

// Fills cs[0, half) with cos and cs[half, 2·half) with sin of pos · invFreq[i], block-strided;
// the caller synchronises the block before reading.
__device__ inline void ropeCosSin(float* cs, float pos, const float* __restrict__ invFreq, int half) {
  for (int i = threadIdx.x; i < half; i += blockDim.x) ropeCosSinOf(pos, invFreq[i], cs[i], cs[half + i]);
}

// One rotary pair turned by the angle whose cos/sin are given, as transformers' rotate_half
// does: a' = a cos - b sin, b' = b cos + a sin. The multiply-adds are spelt out, so that the
// compiler cannot contract them differently in different kernels.
__device__ __forceinline__ void ropeTurn(float& a, float& b, float co, float si) {
  const float na = __fmaf_rn(a, co, -__fmul_rn(b, si));
  const float nb = __fmaf_rn(b, co, __fmul_rn(a, si));
  a = na;
  b = nb;
}

// Eight consecutive rotary pairs, a[j] = x[c + j] and b[j] = x[c + j + d/2], turned by the
// angles of cs (ropeCosSin's table) as transformers' rotate_half does.
__device__ __forceinline__ void ropeRotate8(float (&a)[8], float (&b)[8], const float* cs, int c, int half) {
#pragma unroll
  for (int j = 0; j < 8; j++) ropeTurn(a[j], b[j], cs[c + j], cs[half + c + j]);
}

}  // namespace lt::cuda
