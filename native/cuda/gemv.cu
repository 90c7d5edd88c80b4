// Small-batch linear on CUDA: y[m, n] = x[m, k] · w[n, k]ᵀ (+ bias[n]) for 1 <= m <= 4, bf16 or
// f16 with f32 accumulation: the q|k|v, o, gate|up, down and head projections of a decode step
// of one to four sequences. At such m the product is a read of w, and cuBLAS's choices for it
// (split-K with a separate reduce kernel, tiles sized for larger m) leave part of the memory
// bandwidth unused (bench/README.md, the batch-1 decode breakdown). gemm.cu decides when this runs.
//
// gemvKernel<T, M>: grid ceil(n / 16), block 256 (8 warps); warp w of block b owns output rows
//   r0 = 16b + 2w and r0 + 1 (a lone last row re-reads r0 and discards that sum). Lane l reads
//   the 16-byte chunks (8 elements) l, l + 32, l + 64, ... of both w rows, four chunks per row in
//   flight before it multiplies, with the streaming cache hint since each weight is read once per
//   step; the M rows of x go through the read-only cache, where every warp finds them. Each lane
//   keeps M × 2 f32 sums; the warp adds them by shuffles (a fixed order: the same inputs give the
//   same bits) and lane 0 writes y (+ bias). No shared memory.
//   Requires k % 8 == 0, x and w 16-byte aligned (then every row is), and y not overlapping x.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "cuda/cuda_kernels.h"
#include "model_common.cuh"

namespace lt::cuda {
namespace {

constexpr int kRowsPerWarp = 2, kWarps = 8, kThreads = kWarps * 32, kRowsPerBlock = kRowsPerWarp * kWarps;
constexpr int kChunksInFlight = 4;

template <typename T>
__device__ __forceinline__ float2 unpackPair(uint32_t bits);
template <>
__device__ __forceinline__ float2 unpackPair<bf16>(uint32_t bits) {
  __nv_bfloat162 v;
  memcpy(&v, &bits, sizeof v);
  return __bfloat1622float2(v);
}
template <>
__device__ __forceinline__ float2 unpackPair<f16>(uint32_t bits) {
  __half2 v;
  memcpy(&v, &bits, sizeof v);
  return __half22float2(v);
}

// acc + Σ a[j]·b[j] over the 8 elements of two 16-byte chunks.
template <typename T>
__device__ __forceinline__ float dot8(const uint4& a, const uint4& b, float acc) {
  const uint32_t pa[4] = {a.x, a.y, a.z, a.w}, pb[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
  for (int j = 0; j < 4; j++) {
    const float2 fa = unpackPair<T>(pa[j]), fb = unpackPair<T>(pb[j]);
    acc = fmaf(fa.x, fb.x, acc);
    acc = fmaf(fa.y, fb.y, acc);
  }
  return acc;
}

template <typename T, int M>
__global__ void __launch_bounds__(kThreads) gemvKernel(const T* __restrict__ x, const T* __restrict__ w,
                                                       const T* __restrict__ bias, T* __restrict__ y, int n, int k) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int r0 = blockIdx.x * kRowsPerBlock + warp * kRowsPerWarp;
  if (r0 >= n) return;  // the whole warp: r0 is the same in every lane
  const int rows = min(kRowsPerWarp, n - r0);
  const int chunks = k / 8;
  const uint4* wRow[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; r++)
    wRow[r] = reinterpret_cast<const uint4*>(w + size_t(r0 + min(r, rows - 1)) * k);
  const uint4* xRow = reinterpret_cast<const uint4*>(x);

  float acc[M][kRowsPerWarp];
#pragma unroll
  for (int m = 0; m < M; m++)
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; r++) acc[m][r] = 0.f;

  for (int first = lane; first < chunks; first += 32 * kChunksInFlight) {
    uint4 wv[kChunksInFlight][kRowsPerWarp];
#pragma unroll
    for (int u = 0; u < kChunksInFlight; u++) {
      const int c = first + 32 * u;
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; r++) wv[u][r] = c < chunks ? __ldcs(wRow[r] + c) : make_uint4(0u, 0u, 0u, 0u);
    }
#pragma unroll
    for (int u = 0; u < kChunksInFlight; u++) {
      const int c = first + 32 * u;
      if (c >= chunks) break;
#pragma unroll
      for (int m = 0; m < M; m++) {
        const uint4 xv = __ldg(xRow + size_t(m) * chunks + c);
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; r++) acc[m][r] = dot8<T>(xv, wv[u][r], acc[m][r]);
      }
    }
  }

#pragma unroll
  for (int m = 0; m < M; m++)
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; r++)
#pragma unroll
      for (int offset = 16; offset > 0; offset >>= 1) acc[m][r] += __shfl_xor_sync(0xffffffffu, acc[m][r], offset);

  if (lane == 0) {
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; r++) {
      if (r >= rows) break;
      const float b = bias != nullptr ? toF(bias[r0 + r]) : 0.f;
#pragma unroll
      for (int m = 0; m < M; m++) y[size_t(m) * n + r0 + r] = fromF<T>(acc[m][r] + b);
    }
  }
}

template <typename T>
void launch(const LinearParams& p, cudaStream_t stream) {
  const T* x = static_cast<const T*>(p.x);
  const T* w = static_cast<const T*>(p.w);
  const T* bias = static_cast<const T*>(p.bias);
  T* y = static_cast<T*>(p.y);
  const unsigned grid = unsigned((p.n + kRowsPerBlock - 1) / kRowsPerBlock);
  switch (p.m) {
    case 1:
      gemvKernel<T, 1><<<grid, kThreads, 0, stream>>>(x, w, bias, y, p.n, p.k);
      break;
    case 2:
      gemvKernel<T, 2><<<grid, kThreads, 0, stream>>>(x, w, bias, y, p.n, p.k);
      break;
    case 3:
      gemvKernel<T, 3><<<grid, kThreads, 0, stream>>>(x, w, bias, y, p.n, p.k);
      break;
    case 4:
      gemvKernel<T, 4><<<grid, kThreads, 0, stream>>>(x, w, bias, y, p.n, p.k);
      break;
    default:
      throw Error("linear: the small-batch GEMV takes 1 to 4 rows, not " + std::to_string(p.m));
  }
  throwIfLaunchFailed("linear", "gemvKernel");
}

bool overlaps(const void* a, size_t aBytes, const void* b, size_t bBytes) {
  const auto a0 = reinterpret_cast<uintptr_t>(a), b0 = reinterpret_cast<uintptr_t>(b);
  return a0 < b0 + bBytes && b0 < a0 + aBytes;
}

}  // namespace

bool smallBatchLinearApplies(const LinearParams& p) {
  const size_t elementBytes = 2;
  return p.m >= 1 && p.m <= kSmallBatchLinearMaxRows && p.n >= 1 && p.k > 0 && p.k % 8 == 0 &&
         (p.xType == DType::BF16 || p.xType == DType::F16) && p.wType == p.xType && aligned16({p.x, p.w}) &&
         !overlaps(p.x, size_t(p.m) * p.k * elementBytes, p.y, size_t(p.m) * p.n * elementBytes);
}

void smallBatchLinear(const LinearParams& p, cudaStream_t stream) {
  if (!smallBatchLinearApplies(p))
    throw Error(
        "linear: the small-batch GEMV needs 1-4 bf16/f16 rows, k % 8 == 0, 16-byte aligned x and w, and y "
        "apart from x");
  if (p.xType == DType::BF16) {
    launch<bf16>(p, stream);
  } else {
    launch<f16>(p, stream);
  }
}

}  // namespace lt::cuda
