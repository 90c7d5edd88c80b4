// The cos/sin table of one token's rotary angles and the 8-pair rotation by it, shared by the
// RoPE kernels (ropeKernel in layer_ops.cu, ropeAppendKvKernel in rope_append.cu).
#pragma once
#include <cuda_runtime.h>

namespace lt::cuda {

// Fills cs[0, half) with cos and cs[half, 2·half) with sin of pos · invFreq[i], block-strided;
// the caller synchronises the block before reading. The angle is rounded to f32 exactly as
// float(pos) * inv_freq in PyTorch (no FMA to contract); cos/sin of it are taken in double,
// which --use_fast_math leaves alone and which stays accurate for any magnitude.
__device__ inline void ropeCosSin(float* cs, float pos, const float* __restrict__ invFreq, int half) {
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const float angle = __fmul_rn(pos, invFreq[i]);
    double s, c;
    sincos(double(angle), &s, &c);
    cs[i] = float(c);
    cs[half + i] = float(s);
  }
}

// Eight consecutive rotary pairs, a[j] = x[c + j] and b[j] = x[c + j + d/2], turned by the
// angles of cs (ropeCosSin's table) as transformers' rotate_half does.
__device__ __forceinline__ void ropeRotate8(float (&a)[8], float (&b)[8], const float* cs, int c, int half) {
#pragma unroll
  for (int j = 0; j < 8; j++) {
    const float co = cs[c + j], si = cs[half + c + j];
    const float na = a[j] * co - b[j] * si;
    const float nb = b[j] * co + a[j] * si;
    a[j] = na;
    b[j] = nb;
  }
}

}  // namespace lt::cuda
