// Small-batch linear on CUDA: y[m, n] = input(x)[m, k] · w[n, k]ᵀ (+ bias[n]), or y += the same,
// for 1 <= m <= 4, bf16 or f16 with f32 accumulation, and RMSNorm of the input (model_params.h)
// done in the kernel where it stays memory-bound (smallBatchLinearFusesInput): every projection of
// a decode step of one to four sequences, with the norm before it and the residual add after it
// (SwiGLU runs before it as a kernel of its own). At such m the product is a read of w; cuBLAS's
// choices for it (split-K with a separate reduce kernel, tiles sized for larger m) leave part of
// the memory bandwidth unused (bench/README.md, the batch-1 decode breakdown). gemm.cu decides
// when this runs.
//
// gemvKernel<T, M, kInput, kAccumulate>: block 256 (8 warps), grid as many blocks as fit on the
//   device at once (4 per SM, 2 for M > 2), at most one per group of 4 output rows; block b takes row
//   groups b, b + grid, b + 2·grid, ... (past n, the last row is re-read and its sums discarded), so
//   the norm's sums and the wait for the kernel ahead are paid once per block. A block's 256 threads
//   split k: thread t takes the 16-byte chunks (8 elements) t, t + 256, t + 512, ... of all four
//   rows, one chunk per row per step, so every thread has 4 loads outstanding: enough in flight to
//   keep the memory busy even for the products with few rows (o, down, q|k|v), which read well below
//   the copy bandwidth when a warp walked k for its two rows alone (bench/README.md). A group's first
//   weights are loaded while the previous group's sums are added. Weights come with the streaming
//   cache hint, each being read once per step; the matching chunks of the M input rows come from L2,
//   past L1 (x is written by the kernel ahead, which may still run when this one starts: see
//   programmatic_launch.cuh), the norm through the read-only cache; they are transformed and rounded
//   to T as a separate op would have stored them. With RMSNorm, the block first sums the squares of
//   its M input rows while its first weights are on their way. Each thread keeps M × 4 f32 sums; they
//   are added by shuffles within a warp and then over the 8 warps in warp order through shared memory
//   (a fixed order: the same inputs give the same bits), and y = (y +) sum + bias is written.
//   Requires k % 8 == 0, x, w (and norm) 16-byte aligned (then every row is), y apart from x.
//   On sm_90 the kernel is a programmatic dependent of the one before it: each thread asks L2 for
//   its first weights before it waits for that kernel, and lets the next one launch once its
//   last weights have arrived, so consecutive projections overlap their edges. Chunks past the
//   end of a row are zero weights times zero inputs, so a step's loads have no branch between
//   them.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_kernels.h"
#include "model_common.cuh"
#include "programmatic_launch.cuh"

namespace lt::cuda {
namespace {

// The shape that read fastest of those timed at one and two input rows (rows per block 2-16, one
// to four chunks per row in flight, with and without an occupancy bound; bench/README.md): four
// rows, one chunk each, and registers held to what lets four blocks share an SM. At three and four
// input rows that bound would spill the sums, so two blocks share an SM there.
constexpr int kWarps = 8, kThreads = kWarps * 32;
constexpr int kRowsPerBlock = 4;
constexpr int blocksPerSm(int inputRows) {
  return inputRows <= 2 ? 4 : 2;
}
static_assert(kRowsPerBlock * kSmallBatchLinearMaxRows <= kThreads, "the final sums take one thread per (row, output)");

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

// The 8 elements of a 16-byte chunk as f32.
template <typename T>
__device__ __forceinline__ void unpack8(const uint4& chunk, float (&f)[8]) {
  const uint32_t words[4] = {chunk.x, chunk.y, chunk.z, chunk.w};
#pragma unroll
  for (int j = 0; j < 4; j++) {
    const float2 pair = unpackPair<T>(words[j]);
    f[2 * j] = pair.x;
    f[2 * j + 1] = pair.y;
  }
}

// Chunk c of input row m after the input transform, rounded to T; zeros where c is past the row
// (`valid` false), whose weights are zero too.
template <typename T, LinearInput kInput>
__device__ __forceinline__ void inputChunk(const uint4* __restrict__ x, const uint4* __restrict__ norm, int m, int c,
                                           bool valid, int chunks, float invRms, float (&f)[8]) {
  const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
  unpack8<T>(valid ? __ldcg(x + size_t(m) * chunks + c) : zero, f);
  if constexpr (kInput == LinearInput::RmsNorm) {
    float g[8];
    unpack8<T>(valid ? __ldg(norm + c) : zero, g);
#pragma unroll
    for (int j = 0; j < 8; j++) f[j] = roundTo<T>(f[j] * invRms * g[j]);
  }
}

// Asks L2 for the 16-byte chunk at p (a hint: no data comes back, nothing is waited for).
__device__ __forceinline__ void prefetchToL2(const void* p) {
  asm volatile("prefetch.global.L2 [%0];\n" ::"l"(p));
}

// acc + Σ x[j]·w[j] over the 8 elements of a chunk.
template <typename T>
__device__ __forceinline__ float dot8(const float (&x)[8], const uint4& w, float acc) {
  float f[8];
  unpack8<T>(w, f);
#pragma unroll
  for (int j = 0; j < 8; j++) acc = fmaf(x[j], f[j], acc);
  return acc;
}

template <typename T, int M, LinearInput kInput, bool kAccumulate>
__global__ void __launch_bounds__(kThreads, blocksPerSm(M))
    gemvKernel(const T* __restrict__ xElements, const T* __restrict__ w, const T* __restrict__ bias,
               const T* __restrict__ normElements, T* __restrict__ y, int n, int k, float eps) {
  constexpr int R = kRowsPerBlock;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int chunks = k / 8, groups = (n + R - 1) / R;
  const uint4* x = reinterpret_cast<const uint4*>(xElements);
  const uint4* norm = reinterpret_cast<const uint4*>(normElements);
  int group = blockIdx.x;
  const uint4* wRow[R];
  // Past n, the last row is re-read and its sums discarded.
  auto pointAt = [&](int g) {
#pragma unroll
    for (int r = 0; r < R; r++) wRow[r] = reinterpret_cast<const uint4*>(w + size_t(min(g * R + r, n - 1)) * k);
  };
  pointAt(group);

  // The first weights go to L2 while the kernel ahead of this one (which wrote x, or reads y)
  // finishes. Only a hint: the loads below come after the wait, so a weight that kernel wrote is
  // never read stale (L2 is where device writes land).
#pragma unroll
  for (int r = 0; r < R; r++)
    if (tid < chunks) prefetchToL2(wRow[r] + tid);
  waitForPrerequisiteGrids();

  uint4 wv[R];
  auto loadStep = [&](int c) {
#pragma unroll
    for (int r = 0; r < R; r++) wv[r] = c < chunks ? __ldcs(wRow[r] + c) : make_uint4(0u, 0u, 0u, 0u);
  };
  loadStep(tid);

  __shared__ float invRms[M];
  __shared__ float partial[kWarps][M][R];
  if constexpr (kInput == LinearInput::RmsNorm) {
    // Once per block, while the first weights are on their way; every thread takes part.
    float squares[M];
#pragma unroll
    for (int m = 0; m < M; m++) squares[m] = 0.f;
    for (int c = tid; c < chunks; c += kThreads) {
#pragma unroll
      for (int m = 0; m < M; m++) {
        float f[8];
        unpack8<T>(__ldcg(x + size_t(m) * chunks + c), f);
#pragma unroll
        for (int j = 0; j < 8; j++) squares[m] = fmaf(f[j], f[j], squares[m]);
      }
    }
#pragma unroll
    for (int m = 0; m < M; m++) {
#pragma unroll
      for (int offset = 16; offset > 0; offset >>= 1) squares[m] += __shfl_xor_sync(0xffffffffu, squares[m], offset);
      if (lane == 0) partial[warp][m][0] = squares[m];
    }
    __syncthreads();
    if (tid < M) {
      float sum = 0.f;
#pragma unroll
      for (int i = 0; i < kWarps; i++) sum += partial[i][tid][0];
      invRms[tid] = rsqrtf(sum / float(k) + eps);
    }
    __syncthreads();  // also: partial is free again for the sums below
  }

  for (;;) {
    float acc[M][R];
#pragma unroll
    for (int m = 0; m < M; m++)
#pragma unroll
      for (int r = 0; r < R; r++) acc[m][r] = 0.f;

    for (int c = tid;;) {
      // A chunk past the row multiplies zero weights by zero inputs, so the R loads of a step are
      // in flight at once (no branch between them).
#pragma unroll
      for (int m = 0; m < M; m++) {
        float xf[8];
        inputChunk<T, kInput>(x, norm, m, c, c < chunks, chunks, kInput == LinearInput::RmsNorm ? invRms[m] : 1.f, xf);
#pragma unroll
        for (int r = 0; r < R; r++) acc[m][r] = dot8<T>(xf, wv[r], acc[m][r]);
      }
      c += kThreads;
      if (c >= chunks) break;
      loadStep(c);
    }
    const int r0 = group * R, rows = min(R, n - r0);
    group += gridDim.x;
    const bool last = group >= groups;
    if (last) {
      // Every weight this thread needs has arrived: the next projection may start streaming its own.
      allowDependentGrids();
    } else {
      // The next group's first weights travel while this one's sums are added.
      pointAt(group);
      loadStep(tid);
    }

#pragma unroll
    for (int m = 0; m < M; m++)
#pragma unroll
      for (int r = 0; r < R; r++) {
#pragma unroll
        for (int offset = 16; offset > 0; offset >>= 1) acc[m][r] += __shfl_xor_sync(0xffffffffu, acc[m][r], offset);
        if (lane == 0) partial[warp][m][r] = acc[m][r];
      }
    __syncthreads();
    if (tid < M * R) {
      const int m = tid / R, r = tid % R;
      if (r < rows) {
        float sum = 0.f;
#pragma unroll
        for (int i = 0; i < kWarps; i++) sum += partial[i][m][r];
        const float b = bias != nullptr ? toF(bias[r0 + r]) : 0.f;
        T& out = y[size_t(m) * n + r0 + r];
        out = fromF<T>(kAccumulate ? toF(out) + (sum + b) : sum + b);
      }
    }
    if (last) break;
    __syncthreads();  // the sums above are read before the next group's warps overwrite partial
  }
}

// At most as many blocks as fit on the device at once (blocksPerSm per SM, as the register bound
// allows), each walking row groups grid-stride: the norm's sums and the wait for the kernel ahead
// are paid once per block, not once per four rows.
int gemvBlocks(int n, int inputRows) {
  int dev = 0;
  const cudaError_t err = cudaGetDevice(&dev);
  if (err != cudaSuccess) throw Error(std::string("linear: cudaGetDevice failed: ") + cudaGetErrorString(err));
  const long long groups = (n + kRowsPerBlock - 1) / kRowsPerBlock;
  return int(std::min<long long>(groups, (long long)std::max(multiprocessors(dev), 1) * blocksPerSm(inputRows)));
}

// Launched as a programmatic dependent of the kernel ahead of it where the device allows
// (programmatic_launch.cuh): its first weights stream into L2 during that kernel's tail.
template <typename T, int M, LinearInput kInput, bool kAccumulate>
void launchRows(const LinearParams& p, cudaStream_t stream) {
  launchProgrammatic("linear", "gemvKernel", gemvKernel<T, M, kInput, kAccumulate>, dim3(unsigned(gemvBlocks(p.n, M))),
                     dim3(kThreads), 0, stream, static_cast<const T*>(p.x), static_cast<const T*>(p.w),
                     static_cast<const T*>(p.bias), static_cast<const T*>(p.norm), static_cast<T*>(p.y), p.n, p.k,
                     p.eps);
}

// The most rows the GEMV takes with its input as given or normed inside it
// (smallBatchLinearFusesInput); only those kernels are built. Every block redoes the norm of the
// input rows, so the norm's arithmetic grows with the rows while the weight bytes do not; it hid
// under the weight reads up to two rows (measured with two weight rows per warp).
template <LinearInput kInput>
constexpr int kFusedRows = kInput == LinearInput::Plain ? kSmallBatchLinearMaxRows : 2;

template <typename T, LinearInput kInput, bool kAccumulate, int M = 1>
void launchFor(const LinearParams& p, cudaStream_t stream) {
  if (p.m == M) {
    launchRows<T, M, kInput, kAccumulate>(p, stream);
  } else if constexpr (M < kFusedRows<kInput>) {
    launchFor<T, kInput, kAccumulate, M + 1>(p, stream);
  } else {
    throw Error("linear: internal: the small-batch GEMV does not take " + std::to_string(p.m) + " rows here");
  }
}

template <typename T, bool kAccumulate>
void launchInput(const LinearParams& p, cudaStream_t stream) {
  switch (p.input) {
    case LinearInput::Plain:
      launchFor<T, LinearInput::Plain, kAccumulate>(p, stream);
      return;
    case LinearInput::RmsNorm:
      launchFor<T, LinearInput::RmsNorm, kAccumulate>(p, stream);
      return;
    case LinearInput::SwiGlu:
      break;  // smallBatchLinear refuses it first
  }
  throw Error("linear: internal: the small-batch GEMV does not take a SwiGLU input");
}

template <typename T>
void launch(const LinearParams& p, cudaStream_t stream) {
  if (p.accumulate) {
    launchInput<T, true>(p, stream);
  } else {
    launchInput<T, false>(p, stream);
  }
}

bool overlaps(const void* a, size_t aBytes, const void* b, size_t bBytes) {
  const auto a0 = reinterpret_cast<uintptr_t>(a), b0 = reinterpret_cast<uintptr_t>(b);
  return a0 < b0 + bBytes && b0 < a0 + aBytes;
}

}  // namespace

bool smallBatchLinearFusesInput(const LinearParams& p) {
  switch (p.input) {
    case LinearInput::Plain:
      return p.m <= kFusedRows<LinearInput::Plain>;
    case LinearInput::RmsNorm:
      return p.m <= kFusedRows<LinearInput::RmsNorm>;
    case LinearInput::SwiGlu:
      // An exponential and a reciprocal per element, redone by every block (every warp, as
      // measured): fused into the down projection it read at a third of the plain product's bandwidth
      // (bench/README.md), so SwiGLU always runs as its own kernel first.
      return false;
  }
  return false;
}

bool smallBatchLinearApplies(const LinearParams& p) {
  const size_t elementBytes = 2;
  const size_t xColumns = size_t(p.input == LinearInput::SwiGlu ? 2 : 1) * p.k;
  return p.m >= 1 && p.m <= kSmallBatchLinearMaxRows && p.n >= 1 && p.k > 0 && p.k % 8 == 0 &&
         (p.xType == DType::BF16 || p.xType == DType::F16) && p.wType == p.xType &&
         aligned16({p.x, p.w, p.input == LinearInput::RmsNorm ? p.norm : nullptr}) &&
         !overlaps(p.x, size_t(p.m) * xColumns * elementBytes, p.y, size_t(p.m) * p.n * elementBytes);
}

void smallBatchLinear(const LinearParams& p, cudaStream_t stream) {
  if (!smallBatchLinearApplies(p))
    throw Error("linear: the small-batch GEMV needs 1 to " + std::to_string(kSmallBatchLinearMaxRows) +
                " bf16/f16 rows, k % 8 == 0, 16-byte aligned x, w and norm, and y apart from x");
  if (!smallBatchLinearFusesInput(p))
    throw Error("linear: internal: the small-batch GEMV was handed an input transform it does not fuse at " +
                std::to_string(p.m) + " rows");
  if (p.xType == DType::BF16) {
    launch<bf16>(p, stream);
  } else {
    launch<f16>(p, stream);
  }
}

}  // namespace lt::cuda
