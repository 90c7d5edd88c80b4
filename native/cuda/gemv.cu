// Small-batch linear on CUDA: y[m, n] = input(x)[m, k] · w[n, k]ᵀ (+ bias[n]), or y += the same, or
// SwiGLU or RoPE + the K/V append of the same (LinearOutput), for 1 <= m <= 4, bf16 or f16 with f32
// accumulation, and RMSNorm of the input (model_params.h) done in the kernel where it stays
// memory-bound (smallBatchLinearFusesInput): every projection of a decode step of one to four
// sequences, with the norm before it and the residual add, SwiGLU or RoPE + append after it. At
// such m the product is a read of w; cuBLAS's choices for it (split-K with a separate reduce
// kernel, tiles sized for larger m) leave part of the memory bandwidth unused (bench/README.md, the
// batch-1 decode breakdown). gemm.cu decides when this runs.
//
// gemvKernel<T, M, kInput, kEpilogue>: block 256 (8 warps), grid as many blocks as fit on the
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
//   (a fixed order: the same inputs give the same bits), and y = (y +) sum + bias is written. With
//   the SwiGLU epilogue a group is two gate rows and the two up rows that pair with them (rows j and
//   inner + j), so that one block holds both halves of its two outputs: each is rounded to T as the
//   product would have been stored, and silu(gate) · up is written, the bits of the product followed
//   by the SwiGLU kernel. The RoPE + append epilogue does the same with two rotary pairs (i, i +
//   d/2), (i + 1, i + 1 + d/2) of one q or k head: the pair is rounded as stored, turned by
//   ropeTurn with the cos/sin ropeAppendKvKernel would take (each block takes those of its groups
//   before its first sums, not between groups), and written to q or the token's K
//   pool row; value rows go to the V pool row as stored. Requires k % 8 == 0, x, w (and norm) 16-byte aligned (then
//   every row is), y apart from x. On sm_90 the kernel is a programmatic dependent of the one before it: each thread
//   loads its first weights into registers before it waits for that kernel where no kernel writes
//   them (LinearParams::constantWeight: a model's weights), else asks L2 for them, and lets the next
//   one launch once its last weights have arrived, so consecutive projections overlap their edges. Chunks past the
//   end of a row are zero weights times zero inputs, so a step's loads have no branch between them.
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
#include "rope_angles.cuh"
#include "step_timeline.cuh"

namespace lt::cuda {
LT_TIMELINE_BUFFER(gemvTimeline)
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
static_assert(kRowsPerBlock == 4, "a SwiGLU or RoPE group is two pairs of rows");

// What a block does with its sums: store them, add them to y (a residual add), store
// silu(gate) · up of them (LinearOutput::SwiGlu), or rotate q and k and write k and v to the
// K/V pool (LinearOutput::RopeAppendKv).
enum class Epilogue { Store, Accumulate, SwiGlu, RopeAppendKv };

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

template <typename T, int M, LinearInput kInput, Epilogue kEpilogue>
__global__ void __launch_bounds__(kThreads, blocksPerSm(M))
    gemvKernel(const T* __restrict__ xElements, const T* __restrict__ w, const T* __restrict__ bias,
               const T* __restrict__ normElements, T* __restrict__ y, int n, int k, float eps,
               const RopeAppendKvParams rope, bool constantWeight) {
  constexpr int R = kRowsPerBlock;
  constexpr bool kSwiGlu = kEpilogue == Epilogue::SwiGlu, kRope = kEpilogue == Epilogue::RopeAppendKv;
  LT_TIMELINE_TIMES(times);
  LT_TIMELINE_ENTERED(times);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int inner = n / 2;  // outputs of the SwiGLU epilogue
  const int chunks = k / 8, groups = kSwiGlu ? (inner + 1) / 2 : (n + R - 1) / R;
  // The RoPE epilogue's groups: first those of the rotated heads (q, then k), each two pairs (i,
  // i + d/2) and (i + 1, i + 1 + d/2) of one head, then the value rows four at a time, which
  // are the plain groups from there on ((hq + hkv) · d rows = 4 · rotatedGroups).
  const int half = rope.d / 2, pairGroups = half / 2, rotatedGroups = (rope.hq + rope.hkv) * pairGroups;
  const long long poolSlots = (long long)rope.numPages * rope.pageSize;
  const uint4* x = reinterpret_cast<const uint4*>(xElements);
  const uint4* norm = reinterpret_cast<const uint4*>(normElements);
  int group = blockIdx.x;
  const uint4* wRow[R];
  // Past the last output, the last row (of its half) is re-read and its sums discarded.
  auto pointAt = [&](int g) {
#pragma unroll
    for (int r = 0; r < R; r++) {
      int row = min(g * R + r, n - 1);
      if constexpr (kSwiGlu) row = min(2 * g + (r & 1), inner - 1) + (r >> 1) * inner;
      if constexpr (kRope) {
        if (g < rotatedGroups) {
          const int h = g / pairGroups;
          row = h * rope.d + 2 * (g - h * pairGroups) + (r & 1) + (r >> 1) * half;
        }
      }
      wRow[r] = reinterpret_cast<const uint4*>(w + size_t(row) * k);
    }
  };
  pointAt(group);

  uint4 wv[R];
  auto loadStep = [&](int c) {
#pragma unroll
    for (int r = 0; r < R; r++) wv[r] = c < chunks ? __ldcs(wRow[r] + c) : make_uint4(0u, 0u, 0u, 0u);
  };
  // The first weights travel while the kernel ahead of this one (which wrote x, or reads y)
  // finishes: loaded into registers when no kernel writes them (constantWeight), else only asked
  // of L2 and loaded after the wait, so that a weight that kernel wrote is never read stale (L2
  // is where device writes land).
  if (constantWeight) {
    loadStep(tid);
    waitForPrerequisiteGrids();
  } else {
#pragma unroll
    for (int r = 0; r < R; r++)
      if (tid < chunks) prefetchToL2(wRow[r] + tid);
    waitForPrerequisiteGrids();
    loadStep(tid);
  }
  LT_TIMELINE_WAITED(times);

  // The RoPE epilogue's cos/sin, one entry per (group of this block, input row, pair), and the
  // tokens' pool slots: taken here while the first weights are on their way. In the epilogue, a
  // double-precision sincos after two dependent loads held the whole block between a group's sums
  // and the next group's loads (bench/README.md). A block with more groups than entries takes
  // the rest's there.
  constexpr int kRopeEntries = kThreads / (2 * M) * (2 * M);
  __shared__ float2 ropeCs[kRope ? kRopeEntries : 1];
  __shared__ int32_t ropeSlot[kRope ? M : 1];
  if constexpr (kRope) {
    if (tid < M) ropeSlot[tid] = __ldcg(rope.slots + tid);
    const int g = blockIdx.x + tid / (2 * M) * gridDim.x;
    if (tid < kRopeEntries && g < rotatedGroups) {
      const int h = g / pairGroups, i = 2 * (g - h * pairGroups) + tid % 2;
      float co, si;
      ropeCosSinOf(float(__ldcg(rope.positions + tid / 2 % M)), __ldg(rope.invFreq + i), co, si);
      ropeCs[tid] = make_float2(co, si);
    }
  }

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
    const int current = group;
    const int first = kSwiGlu ? 2 * group : group * R;  // the group's first output
    const int outputs = kSwiGlu ? min(2, inner - first) : min(R, n - first);
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
    if constexpr (kSwiGlu) {
      if (tid < M * 2) {
        const int m = tid / 2, j = tid % 2;
        if (j < outputs) {
          float gate = 0.f, up = 0.f;
#pragma unroll
          for (int i = 0; i < kWarps; i++) gate += partial[i][m][j], up += partial[i][m][j + 2];
          const int col = first + j;
          if (bias != nullptr) gate += toF(bias[col]), up += toF(bias[inner + col]);
          y[size_t(m) * inner + col] = fromF<T>(silu(roundTo<T>(gate)) * roundTo<T>(up));
        }
      }
    } else if (kRope && current < rotatedGroups) {
      if (tid < M * 2) {
        const int m = tid / 2, j = tid % 2;
        const int h = current / pairGroups, i = 2 * (current - h * pairGroups) + j;
        float a = 0.f, b = 0.f;
#pragma unroll
        for (int v = 0; v < kWarps; v++) a += partial[v][m][j], b += partial[v][m][j + 2];
        const int rowA = h * rope.d + i;
        if (bias != nullptr) a += toF(bias[rowA]), b += toF(bias[rowA + half]);
        // As the stored product would be read back, then turned as ropeAppendKvKernel turns it.
        a = roundTo<T>(a), b = roundTo<T>(b);
        const int entry = (current - int(blockIdx.x)) / int(gridDim.x) * (2 * M) + tid;
        float2 cs;
        if (entry < kRopeEntries)
          cs = ropeCs[entry];
        else
          ropeCosSinOf(float(__ldcg(rope.positions + m)), __ldg(rope.invFreq + i), cs.x, cs.y);
        ropeTurn(a, b, cs.x, cs.y);
        T* dst = nullptr;
        if (h < rope.hq) {
          dst = static_cast<T*>(rope.q) + (size_t(m) * rope.hq + h) * rope.d;
        } else {
          const int32_t slot = ropeSlot[m];
          if (slot >= 0 && slot < poolSlots)
            dst = static_cast<T*>(rope.kPages) + (size_t(slot) * rope.hkv + (h - rope.hq)) * rope.d;
        }
        if (dst != nullptr) dst[i] = fromF<T>(a), dst[i + half] = fromF<T>(b);
      }
    } else if (kRope) {
      if (tid < M * R) {
        const int m = tid / R, r = tid % R;
        float sum = 0.f;
#pragma unroll
        for (int v = 0; v < kWarps; v++) sum += partial[v][m][r];
        const int row = first + r;
        const float b = bias != nullptr ? toF(bias[row]) : 0.f;
        const int32_t slot = ropeSlot[m];
        if (slot >= 0 && slot < poolSlots)
          static_cast<T*>(rope.vPages)[size_t(slot) * rope.hkv * rope.d + (row - (rope.hq + rope.hkv) * rope.d)] =
              fromF<T>(sum + b);
      }
    } else if (tid < M * R) {
      const int m = tid / R, r = tid % R;
      if (r < outputs) {
        float sum = 0.f;
#pragma unroll
        for (int i = 0; i < kWarps; i++) sum += partial[i][m][r];
        const float b = bias != nullptr ? toF(bias[first + r]) : 0.f;
        T& out = y[size_t(m) * n + first + r];
        out = fromF<T>(kEpilogue == Epilogue::Accumulate ? toF(out) + (sum + b) : sum + b);
      }
    }
    if (last) break;
    __syncthreads();  // the sums above are read before the next group's warps overwrite partial
  }
  LT_TIMELINE_RECORD(gemvTimeline, kTimelineGemv, w, times);
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
// (programmatic_launch.cuh): its first weights travel during that kernel's tail.
template <typename T, int M, LinearInput kInput, Epilogue kEpilogue>
void launchRows(const LinearParams& p, cudaStream_t stream) {
  launchProgrammatic("linear", "gemvKernel", gemvKernel<T, M, kInput, kEpilogue>, dim3(unsigned(gemvBlocks(p.n, M))),
                     dim3(kThreads), 0, stream, static_cast<const T*>(p.x), static_cast<const T*>(p.w),
                     static_cast<const T*>(p.bias), static_cast<const T*>(p.norm), static_cast<T*>(p.y), p.n, p.k,
                     p.eps, p.rope, p.constantWeight);
}

// The most rows the GEMV takes with its input as given or normed inside it
// (smallBatchLinearFusesInput); only those kernels are built. Every block redoes the norm of the
// input rows, so the norm's arithmetic grows with the rows while the weight bytes do not; it hid
// under the weight reads up to two rows (measured with two weight rows per warp).
template <LinearInput kInput>
constexpr int kFusedRows = kInput == LinearInput::Plain ? kSmallBatchLinearMaxRows : 2;

template <typename T, LinearInput kInput, Epilogue kEpilogue, int M = 1>
void launchFor(const LinearParams& p, cudaStream_t stream) {
  if (p.m == M) {
    launchRows<T, M, kInput, kEpilogue>(p, stream);
  } else if constexpr (M < kFusedRows<kInput>) {
    launchFor<T, kInput, kEpilogue, M + 1>(p, stream);
  } else {
    throw Error("linear: internal: the small-batch GEMV does not take " + std::to_string(p.m) + " rows here");
  }
}

template <typename T, Epilogue kEpilogue>
void launchInput(const LinearParams& p, cudaStream_t stream) {
  switch (p.input) {
    case LinearInput::Plain:
      launchFor<T, LinearInput::Plain, kEpilogue>(p, stream);
      return;
    case LinearInput::RmsNorm:
      launchFor<T, LinearInput::RmsNorm, kEpilogue>(p, stream);
      return;
    case LinearInput::SwiGlu:
      break;  // smallBatchLinear refuses it first
  }
  throw Error("linear: internal: the small-batch GEMV does not take a SwiGLU input");
}

template <typename T>
void launch(const LinearParams& p, cudaStream_t stream) {
  if (p.output == LinearOutput::SwiGlu) {
    launchInput<T, Epilogue::SwiGlu>(p, stream);
  } else if (p.output == LinearOutput::RopeAppendKv) {
    launchInput<T, Epilogue::RopeAppendKv>(p, stream);
  } else if (p.accumulate) {
    launchInput<T, Epilogue::Accumulate>(p, stream);
  } else {
    launchInput<T, Epilogue::Store>(p, stream);
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

bool smallBatchLinearFusesOutput(const LinearParams& p) {
  switch (p.output) {
    case LinearOutput::Plain:
    case LinearOutput::SwiGlu:
      return true;
    case LinearOutput::RopeAppendKv:
      // A group is two rotary pairs of one head; the rest of the product's checks are linear's.
      return p.rope.d % 4 == 0 && p.m == p.rope.tokens;
  }
  return false;
}

bool smallBatchLinearApplies(const LinearParams& p) {
  const size_t elementBytes = 2;
  const size_t xColumns = size_t(p.input == LinearInput::SwiGlu ? 2 : 1) * p.k;
  const bool swiGluOut = p.output == LinearOutput::SwiGlu;
  // With RoPE + append, y is rope.q: the query heads' part of each row.
  const size_t yColumns = swiGluOut                                ? size_t(p.n) / 2
                          : p.output == LinearOutput::RopeAppendKv ? size_t(p.rope.hq) * p.rope.d
                                                                   : size_t(p.n);
  return p.m >= 1 && p.m <= kSmallBatchLinearMaxRows && p.n >= 1 && p.k > 0 && p.k % 8 == 0 &&
         (p.xType == DType::BF16 || p.xType == DType::F16) && p.wType == p.xType &&
         !(swiGluOut && (p.n % 2 != 0 || p.accumulate)) && !(p.output == LinearOutput::RopeAppendKv && p.accumulate) &&
         aligned16({p.x, p.w, p.input == LinearInput::RmsNorm ? p.norm : nullptr}) &&
         !overlaps(p.x, size_t(p.m) * xColumns * elementBytes, p.y, size_t(p.m) * yColumns * elementBytes);
}

void smallBatchLinear(const LinearParams& p, cudaStream_t stream) {
  if (!smallBatchLinearApplies(p))
    throw Error("linear: the small-batch GEMV needs 1 to " + std::to_string(kSmallBatchLinearMaxRows) +
                " bf16/f16 rows, k % 8 == 0, 16-byte aligned x, w and norm, y apart from x, and for a SwiGLU "
                "output an even n and no accumulate");
  if (!smallBatchLinearFusesInput(p))
    throw Error("linear: internal: the small-batch GEMV was handed an input transform it does not fuse at " +
                std::to_string(p.m) + " rows");
  if (!smallBatchLinearFusesOutput(p))
    throw Error("linear: internal: the small-batch GEMV was handed an output transform it does not fuse");
  if (p.xType == DType::BF16) {
    launch<bf16>(p, stream);
  } else {
    launch<f16>(p, stream);
  }
}

}  // namespace lt::cuda
