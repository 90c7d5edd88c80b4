// CUDA layer operations other than Linear (params in native/core/model_params.h): RMSNorm,
// RoPE, SwiGLU and embedding. Element types f32, f16 and bf16 in
// any mix the params allow; arithmetic in f32; 16-bit results rounded to nearest-even, so the
// results agree with native/cpu/layer_ops.cpp up to the order of one sum.
//
// rmsNormKernel<T, W>: grid rows, block min(1024, 32·ceil(dim/8/2/32)), one CTA per row. Each
//   thread keeps up to kCache 8-element vectors (16-byte loads for 16-bit types) in registers,
//   so x (and the residual) are read once: residual += x is stored rounded to T and the norm is
//   taken of the stored value; block-wide sum of squares by warp shuffles; y = v·rsqrt(ms+eps)·w.
//   rmsNormScalarKernel handles dims that are not a multiple of 8 (or misaligned rows, or rows
//   longer than 1024·8·kCache) with two passes over the row.
// ropeKernel<T, kVec>: grid tokens, block 128. The CTA first forms the d/2 angles of its token,
//   angle = float(position) · invFreq[i] rounded in f32 (as transformers forms it), and takes
//   cos/sin of that f32 angle in double (sincos), so positions up to 2^31 and --use_fast_math
//   lose nothing past the f32 angle; then rotates every q and k head of the token in place,
//   8 pairs per thread (16-byte loads of x[i..i+7] and x[i+d/2..]) when d/2 % 8 == 0.
// swiGluKernel<T, kVec>: grid-stride, 8 outputs per thread: y = g·sigmoid(g)·u, g and u read
//   with 16-byte loads past L1 from the [gate | up] halves of the row. On sm_90 it is a programmatic
//   dependent of the kernel before it and lets the one after it (a decode step's down
//   projection, which asks L2 for its weights before it waits) launch at once.
// embeddingKernel<TT, YT, kVec>: grid-stride copy of table rows (converted to y's type), 8
//   elements per thread; an id outside [0, vocab) yields a zero row instead of a wild read.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "cuda/cuda_kernels.h"
#include "model_common.cuh"
#include "programmatic_launch.cuh"
#include "rope_angles.cuh"

namespace lt::cuda {
namespace {

constexpr int kGridStrideBlock = 256;
constexpr long long kMaxGrid = 16384;

unsigned gridFor(long long work, int block = kGridStrideBlock) {
  return unsigned(std::max(1LL, std::min(kMaxGrid, (work + block - 1) / block)));
}

// ----------------------------------------------------------------------------- RMSNorm
constexpr int kNormCache = 4;  // 8-element vectors a thread keeps in registers

template <typename T, typename W>
__global__ void __launch_bounds__(1024)
    rmsNormKernel(const T* x, T* residual, const W* __restrict__ weight, T* y, int dim, float eps) {
  __shared__ float scratch[32];
  const int vecs = dim >> 3;
  const size_t base = size_t(blockIdx.x) * dim;
  float v[kNormCache][8];
  float ss = 0.f;
#pragma unroll
  for (int c = 0; c < kNormCache; c++) {
    const int i = threadIdx.x + c * blockDim.x;
    if (i < vecs) load8(x + base + size_t(i) * 8, v[c]);
  }
  if (residual != nullptr) {
#pragma unroll
    for (int c = 0; c < kNormCache; c++) {
      const int i = threadIdx.x + c * blockDim.x;
      if (i < vecs) {
        float r[8];
        load8(residual + base + size_t(i) * 8, r);
#pragma unroll
        for (int j = 0; j < 8; j++) v[c][j] = roundTo<T>(r[j] + v[c][j]);
        store8(residual + base + size_t(i) * 8, v[c]);
      }
    }
  }
#pragma unroll
  for (int c = 0; c < kNormCache; c++) {
    const int i = threadIdx.x + c * blockDim.x;
    if (i < vecs) {
#pragma unroll
      for (int j = 0; j < 8; j++) ss = fmaf(v[c][j], v[c][j], ss);
    }
  }
  const float inv = rsqrtf(blockSum(ss, scratch) / float(dim) + eps);
#pragma unroll
  for (int c = 0; c < kNormCache; c++) {
    const int i = threadIdx.x + c * blockDim.x;
    if (i < vecs) {
      float w[8];
      load8(weight + size_t(i) * 8, w);
#pragma unroll
      for (int j = 0; j < 8; j++) v[c][j] = v[c][j] * inv * w[j];
      store8(y + base + size_t(i) * 8, v[c]);
    }
  }
}

template <typename T, typename W>
__global__ void __launch_bounds__(256)
    rmsNormScalarKernel(const T* x, T* residual, const W* __restrict__ weight, T* y, int dim, float eps) {
  __shared__ float scratch[32];
  const size_t base = size_t(blockIdx.x) * dim;
  float ss = 0.f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    float v = toF(x[base + i]);
    if (residual != nullptr) {
      const T r = fromF<T>(toF(residual[base + i]) + v);
      residual[base + i] = r;
      v = toF(r);
    }
    ss = fmaf(v, v, ss);
  }
  const float inv = rsqrtf(blockSum(ss, scratch) / float(dim) + eps);
  // Each thread reads back only what it wrote itself (or x), so y may alias x.
  const T* src = residual != nullptr ? residual : x;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) y[base + i] = fromF<T>(toF(src[base + i]) * inv * toF(weight[i]));
}

template <typename T, typename W>
void launchRmsNorm(const RmsNormParams& p, cudaStream_t stream) {
  const T* x = static_cast<const T*>(p.x);
  T* residual = static_cast<T*>(p.residual);
  const W* weight = static_cast<const W*>(p.weight);
  T* y = static_cast<T*>(p.y);
  const int vecs = p.dim / 8;
  // 16-byte accesses need every row start aligned: dim % 8 == 0 and aligned bases (32 B for f32
  // rows, which load8 reads as two float4).
  const bool vec = p.dim % 8 == 0 && aligned16({p.x, p.residual, p.weight, p.y}) && vecs <= 1024 * kNormCache;
  if (vec) {
    const int threads = std::min(1024, std::max(32, (vecs / 2 + 31) / 32 * 32));
    const int need = (vecs + kNormCache - 1) / kNormCache;
    const int block = std::max(threads, (need + 31) / 32 * 32);
    rmsNormKernel<T, W><<<p.rows, block, 0, stream>>>(x, residual, weight, y, p.dim, p.eps);
    throwIfLaunchFailed("rmsNorm", "rmsNormKernel");
  } else {
    rmsNormScalarKernel<T, W><<<p.rows, 256, 0, stream>>>(x, residual, weight, y, p.dim, p.eps);
    throwIfLaunchFailed("rmsNorm", "rmsNormScalarKernel");
  }
}

// ----------------------------------------------------------------------------- RoPE
constexpr int kRopeBlock = 128;

template <typename T, bool kVec>
__global__ void __launch_bounds__(kRopeBlock) ropeKernel(T* q, T* k, const int32_t* __restrict__ positions,
                                                         const float* __restrict__ invFreq, int hq, int hkv, int d) {
  extern __shared__ float cs[];  // cos [d/2], then sin [d/2]
  const int t = blockIdx.x;
  const int half = d >> 1;
  ropeCosSin(cs, float(positions[t]), invFreq, half);
  __syncthreads();
  const int heads = hq + hkv;
  if constexpr (kVec) {
    const int vecs = half >> 3;
    for (int u = threadIdx.x; u < heads * vecs; u += blockDim.x) {
      const int h = u / vecs, c = (u - h * vecs) * 8;
      T* row = h < hq ? q + (size_t(t) * hq + h) * d : k + (size_t(t) * hkv + (h - hq)) * d;
      float a[8], b[8];
      load8(row + c, a);
      load8(row + half + c, b);
      ropeRotate8(a, b, cs, c, half);
      store8(row + c, a);
      store8(row + half + c, b);
    }
  } else {
    for (int u = threadIdx.x; u < heads * half; u += blockDim.x) {
      const int h = u / half, i = u - h * half;
      T* row = h < hq ? q + (size_t(t) * hq + h) * d : k + (size_t(t) * hkv + (h - hq)) * d;
      float a = toF(row[i]), b = toF(row[i + half]);
      ropeTurn(a, b, cs[i], cs[half + i]);
      row[i] = fromF<T>(a);
      row[i + half] = fromF<T>(b);
    }
  }
}

template <typename T>
void launchRope(const RopeParams& p, cudaStream_t stream) {
  const int half = p.d / 2;
  const bool vec = half % 8 == 0 && aligned16({p.q, p.k});
  const size_t smem = size_t(p.d) * sizeof(float);
  T* q = static_cast<T*>(p.q);
  T* k = static_cast<T*>(p.k);
  const int hq = q != nullptr ? p.hq : 0, hkv = k != nullptr ? p.hkv : 0;
  if (vec) {
    ropeKernel<T, true><<<p.tokens, kRopeBlock, smem, stream>>>(q, k, p.positions, p.invFreq, hq, hkv, p.d);
  } else {
    ropeKernel<T, false><<<p.tokens, kRopeBlock, smem, stream>>>(q, k, p.positions, p.invFreq, hq, hkv, p.d);
  }
  throwIfLaunchFailed("rope", "ropeKernel");
}

// ----------------------------------------------------------------------------- SwiGLU
template <typename T, bool kVec>
__global__ void __launch_bounds__(kGridStrideBlock)
    swiGluKernel(const T* __restrict__ x, T* __restrict__ y, long long rows, int inner) {
  allowDependentGrids();
  waitForPrerequisiteGrids();
  const int per = kVec ? inner / 8 : inner;  // work units per row
  const long long total = rows * per;
  for (long long u = blockIdx.x * (long long)blockDim.x + threadIdx.x; u < total;
       u += (long long)gridDim.x * blockDim.x) {
    const long long r = u / per;
    const int c = int(u - r * per);
    const T* xr = x + size_t(r) * 2 * inner;
    if constexpr (kVec) {
      float g[8], v[8];
      load8<true>(xr + c * 8, g);
      load8<true>(xr + inner + c * 8, v);
#pragma unroll
      for (int j = 0; j < 8; j++) g[j] = silu(g[j]) * v[j];
      store8(y + size_t(r) * inner + c * 8, g);
    } else {
      y[size_t(r) * inner + c] = fromF<T>(silu(toF(__ldcg(xr + c))) * toF(__ldcg(xr + inner + c)));
    }
  }
}

template <typename T>
void launchSwiGlu(const SwiGluParams& p, cudaStream_t stream) {
  const T* x = static_cast<const T*>(p.x);
  T* y = static_cast<T*>(p.y);
  if (p.inner % 8 == 0 && aligned16({p.x, p.y})) {
    launchProgrammatic("swiGlu", "swiGluKernel", swiGluKernel<T, true>,
                       dim3(gridFor((long long)p.rows * (p.inner / 8))), dim3(kGridStrideBlock), 0, stream, x, y,
                       (long long)p.rows, p.inner);
  } else {
    launchProgrammatic("swiGlu", "swiGluKernel", swiGluKernel<T, false>, dim3(gridFor((long long)p.rows * p.inner)),
                       dim3(kGridStrideBlock), 0, stream, x, y, (long long)p.rows, p.inner);
  }
}

// ----------------------------------------------------------------------------- embedding
template <typename TT, typename YT, bool kVec>
__global__ void __launch_bounds__(kGridStrideBlock)
    embeddingKernel(const int32_t* __restrict__ ids, const TT* __restrict__ table, YT* __restrict__ y, long long tokens,
                    int dim, int vocab) {
  const int per = kVec ? dim / 8 : dim;
  const long long total = tokens * per;
  for (long long u = blockIdx.x * (long long)blockDim.x + threadIdx.x; u < total;
       u += (long long)gridDim.x * blockDim.x) {
    const long long t = u / per;
    const int c = int(u - t * per);
    const int id = ids[t];
    const bool ok = id >= 0 && id < vocab;
    if constexpr (kVec) {
      float v[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
      if (ok) load8(table + size_t(id) * dim + c * 8, v);
      store8(y + size_t(t) * dim + c * 8, v);
    } else {
      y[size_t(t) * dim + c] = fromF<YT>(ok ? toF(table[size_t(id) * dim + c]) : 0.f);
    }
  }
}

template <typename TT, typename YT>
void launchEmbedding(const EmbeddingParams& p, cudaStream_t stream) {
  const TT* table = static_cast<const TT*>(p.table);
  YT* y = static_cast<YT*>(p.y);
  if (p.dim % 8 == 0 && aligned16({p.table, p.y})) {
    embeddingKernel<TT, YT, true><<<gridFor((long long)p.tokens * (p.dim / 8)), kGridStrideBlock, 0, stream>>>(
        p.ids, table, y, p.tokens, p.dim, p.vocab);
  } else {
    embeddingKernel<TT, YT, false><<<gridFor((long long)p.tokens * p.dim), kGridStrideBlock, 0, stream>>>(
        p.ids, table, y, p.tokens, p.dim, p.vocab);
  }
  throwIfLaunchFailed("embedding", "embeddingKernel");
}

}  // namespace

void rmsNorm(const RmsNormParams& p, cudaStream_t stream) {
  if (p.rows <= 0 || p.dim <= 0) return;
  withFloatType(p.xType, "rmsNorm", "x", [&](auto xt) {
    withFloatType(p.wType, "rmsNorm", "the weight",
                  [&](auto wt) { launchRmsNorm<decltype(xt), decltype(wt)>(p, stream); });
  });
}

void rope(const RopeParams& p, cudaStream_t stream) {
  if (p.tokens <= 0 || p.d <= 0) return;
  if (p.d % 2 != 0) throw Error("rope: head dim must be even, got " + std::to_string(p.d));
  withFloatType(p.dtype, "rope", "q and k", [&](auto t) { launchRope<decltype(t)>(p, stream); });
}

void swiGlu(const SwiGluParams& p, cudaStream_t stream) {
  if (p.rows <= 0 || p.inner <= 0) return;
  withFloatType(p.dtype, "swiGlu", "x and y", [&](auto t) { launchSwiGlu<decltype(t)>(p, stream); });
}

void embedding(const EmbeddingParams& p, cudaStream_t stream) {
  if (p.tokens <= 0 || p.dim <= 0) return;
  withFloatType(p.tableType, "embedding", "the table", [&](auto tt) {
    withFloatType(p.yType, "embedding", "y", [&](auto yt) { launchEmbedding<decltype(tt), decltype(yt)>(p, stream); });
  });
}

}  // namespace lt::cuda
