// The cos/sin table of one token's rotary angles, shared by the RoPE kernels.
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

}  // namespace lt::cuda
