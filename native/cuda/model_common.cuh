// Helpers shared by the layer-op, GEMM, rope-append and sampling kernels (layer_ops.cu, gemm.cu,
// gemv.cu, rope_append.cu, sampling.cu): dtype dispatch, launch errors, 16-byte alignment,
// element <-> f32 conversion and rounding, eight elements <-> f32 at a time, SiLU, reading any
// float type as its exact f32 bits, a warp's (key, index) max and a block-wide sum.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>
#include <string>

#include "core/dtype.h"
#include "core/error.h"

namespace lt::cuda {

using bf16 = __nv_bfloat16;
using f16 = __half;

inline void throwIfLaunchFailed(const char* op, const char* kernel) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw Error(std::string(op) + ": launch of " + kernel + " failed: " + cudaGetErrorString(err));
}

inline bool aligned16(std::initializer_list<const void*> ptrs) {
  for (const void* p : ptrs)
    if (p != nullptr && reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

// Calls f with a value of the C++ type for `t` (float, __half or __nv_bfloat16).
template <typename F>
void withFloatType(DType t, const char* op, const char* what, F&& f) {
  switch (t) {
    case DType::F32:
      f(float{});
      return;
    case DType::F16:
      f(f16{});
      return;
    case DType::BF16:
      f(bf16{});
      return;
    default:
      throw Error(std::string(op) + ": " + what + " must be f32, f16 or bf16, not " + dtypeName(t));
  }
}

__device__ __forceinline__ float toF(float v) {
  return v;
}
__device__ __forceinline__ float toF(f16 v) {
  return __half2float(v);
}
__device__ __forceinline__ float toF(bf16 v) {
  return __bfloat162float(v);
}

template <typename T>
__device__ __forceinline__ T fromF(float v);
template <>
__device__ __forceinline__ float fromF<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ f16 fromF<f16>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ bf16 fromF<bf16>(float v) {
  return __float2bfloat16_rn(v);
}

// The value a store to T keeps, read back as f32.
template <typename T>
__device__ __forceinline__ float roundTo(float v) {
  return toF(fromF<T>(v));
}

// SiLU, g · 1/(1 + e^-g), as swiGlu, linear's SwiGLU input and the GEMV's SwiGLU output compute
// it. Below g ≈ -87.3 the reciprocal is an f32 subnormal, which --use_fast_math flushes to zero
// although g times it is a normal number down to g ≈ -91.8; from -80 (a margin) 1 + e^g rounds to
// 1 and silu is -e^(g + ln(-g)), which stays normal as long as the result does. The CPU's silu
// takes the same branch.
__device__ __forceinline__ float silu(float g) {
  if (g < -80.f) return -__expf(g + __logf(-g));
  return g * __frcp_rn(1.f + __expf(-g));
}

// The bits of an element widened to f32 (exact: every f16 and bf16 value is an f32 value).
__device__ __forceinline__ uint32_t f32Bits(float v) {
  return __float_as_uint(v);
}
__device__ __forceinline__ uint32_t f32Bits(f16 v) {
  return __float_as_uint(__half2float(v));
}
__device__ __forceinline__ uint32_t f32Bits(bf16 v) {
  return uint32_t(__bfloat16_as_ushort(v)) << 16;
}

// The f32 bits of the 16 / sizeof(T) elements of one 16-byte load, in memory order.
__device__ __forceinline__ void f32Bits16(const uint4& u, float, uint32_t (&b)[4]) {
  b[0] = u.x;
  b[1] = u.y;
  b[2] = u.z;
  b[3] = u.w;
}
__device__ __forceinline__ void f32Bits16(const uint4& u, f16, uint32_t (&b)[8]) {
  const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const float2 t = __half22float2(h[i]);
    b[2 * i] = __float_as_uint(t.x);
    b[2 * i + 1] = __float_as_uint(t.y);
  }
}
__device__ __forceinline__ void f32Bits16(const uint4& u, bf16, uint32_t (&b)[8]) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; i++) {
    b[2 * i] = w[i] << 16;  // little-endian: the lower half is the earlier element
    b[2 * i + 1] = w[i] & 0xffff0000u;
  }
}

// Leaves in every lane of a warp the largest key of the warp, and the lowest index among the
// lanes holding it: the (value, index) order of argmax and topCandidates' max.
template <typename Key>
__device__ __forceinline__ void warpBestKey(Key& best, int& bestI) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const Key ok = __shfl_xor_sync(0xffffffffu, best, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bestI, o);
    if (ok > best || (ok == best && oi < bestI)) {
      best = ok;
      bestI = oi;
    }
  }
}

// Sum over the block; every thread gets the result. `scratch` holds 32 floats; the caller
// synchronises before reusing it.
__device__ __forceinline__ float blockSum(float v, float* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = (blockDim.x + 31) >> 5;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : 0.f;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Eight consecutive elements <-> f32: one 16-byte access for 16-bit types, two for f32.
// p must be 16-byte aligned (8·sizeof(T) bytes for f32: 32).
// kPastL1: read with __ldcg, for data the kernel ahead may still be writing when this one starts
// (programmatic_launch.cuh), which the read-only cache a const __restrict__ load may take would
// not see.
template <bool kPastL1 = false, typename Chunk>
__device__ __forceinline__ Chunk loadChunk(const Chunk* p) {
  if constexpr (kPastL1) return __ldcg(p);
  return *p;
}
template <bool kPastL1 = false>
__device__ __forceinline__ void load8(const float* p, float (&f)[8]) {
  const float4 a = loadChunk<kPastL1>(reinterpret_cast<const float4*>(p)),
               b = loadChunk<kPastL1>(reinterpret_cast<const float4*>(p) + 1);
  f[0] = a.x;
  f[1] = a.y;
  f[2] = a.z;
  f[3] = a.w;
  f[4] = b.x;
  f[5] = b.y;
  f[6] = b.z;
  f[7] = b.w;
}
template <bool kPastL1 = false>
__device__ __forceinline__ void load8(const f16* p, float (&f)[8]) {
  const uint4 u = loadChunk<kPastL1>(reinterpret_cast<const uint4*>(p));
  const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const float2 t = __half22float2(h[i]);
    f[2 * i] = t.x;
    f[2 * i + 1] = t.y;
  }
}
template <bool kPastL1 = false>
__device__ __forceinline__ void load8(const bf16* p, float (&f)[8]) {
  const uint4 u = loadChunk<kPastL1>(reinterpret_cast<const uint4*>(p));
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const float2 t = __bfloat1622float2(h[i]);
    f[2 * i] = t.x;
    f[2 * i + 1] = t.y;
  }
}
__device__ __forceinline__ void store8(float* p, const float (&f)[8]) {
  reinterpret_cast<float4*>(p)[0] = make_float4(f[0], f[1], f[2], f[3]);
  reinterpret_cast<float4*>(p)[1] = make_float4(f[4], f[5], f[6], f[7]);
}
__device__ __forceinline__ void store8(f16* p, const float (&f)[8]) {
  uint4 u;
  __half2* h = reinterpret_cast<__half2*>(&u);
#pragma unroll
  for (int i = 0; i < 4; i++) h[i] = __floats2half2_rn(f[2 * i], f[2 * i + 1]);
  *reinterpret_cast<uint4*>(p) = u;
}
__device__ __forceinline__ void store8(bf16* p, const float (&f)[8]) {
  uint4 u;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; i++) h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
  *reinterpret_cast<uint4*>(p) = u;
}

}  // namespace lt::cuda
