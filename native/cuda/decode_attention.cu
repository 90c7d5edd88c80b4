// Paged decode attention: one query per sequence over its paged K/V cache, GQA, split-KV.
//
//   out[b, h, :] = Σ_j softmax_j(scale · q[b, h] · K[b, j]) · V[b, j]     j = 0 .. seqLens[b]-1
//   lse[b, h]    = log Σ_j exp(scale · q[b, h] · K[b, j])                 (-inf for an empty cache)
//
// Slot j of sequence b lives in page pageTable[b][j / pageSize] at offset j % pageSize of the
// pool [numPages, pageSize, hkv, d]; query head h reads kv head h / (hq / hkv). A streaming
// ring is the same call with seqLens = min(len, sink + window).
//
// decodeKernel<T, D, kRows16>: grid (hkv * qChunks, numSplits, batch), block 128 (4 warps),
//   dynamic shared memory kStages * 64 tokens * D * 2 (K and V) * 2 bytes.
//   One CTA = one (sequence, kv head, up to 16 query heads of its group, KV split). K/V tiles of
//   64 tokens stream through a 3-stage cp.async ring; each warp takes 16 tokens of a tile and
//   runs both products on the tensor cores (mma m16n8k16, the group's query heads as the M
//   rows), with its own online softmax. The 4 warps merge through shared memory at the end.
//   One split writes out/lse directly; several write f32 partials (o/L, log2 L) to the workspace,
//   and the last of them to finish (an arrival count per sequence, kv head and query chunk)
//   merges them, one warp per query head (combineRow), and writes out and lse: no second kernel
//   and no wait for the whole grid between the splits and their merge. On sm_90 it is a
//   programmatic dependent of the kernel before it (in a decode step, the q|k|v projection with
//   RoPE and the K/V append), so its launch and set-up overlap that kernel's tail, and it lets
//   the kernel after it launch at once.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include "core/error.h"
#include "cuda/cuda_kernels.h"
#include "programmatic_launch.cuh"
#include "step_timeline.cuh"

namespace lt::cuda {
LT_TIMELINE_BUFFER(attentionTimeline)
namespace {

constexpr int kTile = 64;  // tokens per pipeline stage: 16 per warp
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kStages = 3;
constexpr int kRowsPerCta = 16;  // query heads one CTA serves: the mma's M
// Below this many tiles a split costs more in start-up latency and partial traffic than it
// gains in parallelism.
constexpr int kMinSplitTiles = 2;
constexpr int kMaxSplits = 64;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Arrival counts of the splits of each (sequence, kv head, query chunk) of a launch, zero
// between launches (the last arrival wraps its count). A module global, so zero from the
// module's load on each device and at one address for every graph that records a launch. The
// launches on a device share it: they must not overlap, which the one stream per device that
// runs them all (runtime.cu) ensures.
constexpr int kArrivalCounts = 1 << 16;
__device__ unsigned int splitArrivals[kArrivalCounts];

struct DecodeArgs {
  const void* q;
  const void* kPages;
  const void* vPages;
  const int32_t* pageTable;
  const int32_t* seqLens;
  void* out;
  float* lse;
  float* oPart;    // [batch, hq, numSplits, D] f32, each split's output already divided by its L
  float* lsePart;  // [batch, hq, numSplits] f32, log2 domain
  int hq, hkv, group, qChunks;
  int pageSize, pageShift;  // pageShift >= 0 when pageSize is a power of two
  int maxPagesPerSeq, numSplits, numPages;
  float scaleLog2;
};

// A sequence's tiles are dealt out evenly over the splits of its actual length: split i of
// `used` takes tiles [i·T/used, (i+1)·T/used), so a short sequence in a batch of long ones
// finishes early instead of leaving most of its CTAs idle but still waiting on one long one,
// and every planned split has work once the sequence has kMinSplitTiles tiles per split (an
// equal token share rounded up to whole tiles left a third of them idle at 4K + 1 tokens, and
// gave the rest a tile more). Every CTA of a sequence reads the same length, so they agree.
__device__ inline int splitsWithWork(int tiles, int numSplits) {
  return min(numSplits, (tiles + kMinSplitTiles - 1) / kMinSplitTiles);
}

// The first tile of split `split` of `used` over `tiles` tiles (split == used gives `tiles`).
__device__ inline int splitFirstTile(int tiles, int used, int split) {
  return int((long long)split * tiles / used);
}

__device__ __forceinline__ int clampedLen(const int32_t* seqLens, int b, int maxPagesPerSeq, int pageSize) {
  const long long cap = (long long)maxPagesPerSeq * pageSize;
  const long long len = __ldcg(seqLens + b);
  return int(len < 0 ? 0 : (len > cap ? cap : len));
}

template <typename T>
struct Ops;

template <>
struct Ops<__nv_bfloat16> {
  static __device__ __forceinline__ void mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
};

template <>
struct Ops<__half> {
  static __device__ __forceinline__ void mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
};

__device__ __forceinline__ uint32_t smemAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte async copy; a row past the sequence's end is zero-filled (no global read), so the
// P·V product never multiplies a masked weight by stale shared memory that could hold NaN.
__device__ __forceinline__ void cpAsync16(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smemAddr(smem)), "l"(gmem), "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cpAsyncCommit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void cpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldsm4(uint32_t r[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smemAddr(smem))
               : "memory");
}
__device__ __forceinline__ void ldsm4Trans(uint32_t r[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smemAddr(smem))
               : "memory");
}

// Rows are D elements; 16-byte chunk c of row r sits at chunk c ^ (r & 7) so that the 8 rows
// one ldmatrix phase reads fall into 8 different bank groups.
template <int D>
__device__ __forceinline__ int swz(int r, int c) {
  return r * D + ((c ^ (r & 7)) << 3);
}

// Merges the partials of the first nValid splits of (sequence, query head) `row` (b · hq + head)
// and writes out and lse; one warp. The partials were written by other CTAs of this grid before
// their arrival counts, so they are read past L1.
template <typename T, int D>
__device__ void combineRow(const DecodeArgs& a, int row, int nValid, int lane) {
  constexpr int kPer = D / 32;  // output elements per lane
  // Lane i holds the log-sums of splits i and i + 32, read once; the loop below takes each
  // split's weight from its lane, so that its loads are the partial outputs alone and a batch of
  // them is in flight at once (a chain of L2 round trips otherwise).
  static_assert(kMaxSplits <= 64, "two log-sums per lane");
  const float* lp = a.lsePart + size_t(row) * a.numSplits;
  const float lpLow = lane < nValid ? __ldcg(lp + lane) : -INFINITY;
  const float lpHigh = lane + 32 < nValid ? __ldcg(lp + lane + 32) : -INFINITY;
  float M = fmaxf(lpLow, lpHigh);
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, off));
  const float wLow = exp2f(lpLow - M), wHigh = exp2f(lpHigh - M);

  float acc[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) acc[i] = 0.f;
  float wsum = 0.f;
  const float* op = a.oPart + size_t(row) * a.numSplits * D + lane * kPer;
  using Partial = std::conditional_t<kPer == 4, float4, float2>;
  constexpr int kBatch = 16;  // partial outputs a lane has in flight
  for (int s0 = 0; s0 < nValid; s0 += kBatch) {
    Partial x[kBatch];
#pragma unroll
    for (int j = 0; j < kBatch; ++j)
      x[j] = s0 + j < nValid ? __ldcg(reinterpret_cast<const Partial*>(op + size_t(s0 + j) * D)) : Partial{};
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      const int s = s0 + j;
      const float w = __shfl_sync(0xffffffffu, s < 32 ? wLow : wHigh, s & 31);
      if (s >= nValid) continue;
      wsum += w;
      acc[0] += w * x[j].x, acc[1] += w * x[j].y;
      if constexpr (kPer == 4) acc[2] += w * x[j].z, acc[3] += w * x[j].w;
    }
  }
  const float inv = wsum > 0.f ? 1.f / wsum : 0.f;
  T* out = static_cast<T*>(a.out) + size_t(row) * D + lane * kPer;
  if constexpr (kPer == 4) {
    uint2 v;
    v.x = Ops<T>::pack(acc[0] * inv, acc[1] * inv);
    v.y = Ops<T>::pack(acc[2] * inv, acc[3] * inv);
    *reinterpret_cast<uint2*>(out) = v;
  } else {
    *reinterpret_cast<uint32_t*>(out) = Ops<T>::pack(acc[0] * inv, acc[1] * inv);
  }
  if (lane == 0 && a.lse) a.lse[row] = nValid > 0 ? (M + log2f(wsum)) * kLn2 : -INFINITY;
}

template <typename T, int D, bool kRows16>
__global__ void __launch_bounds__(kThreads, 2) decodeKernel(const DecodeArgs a) {
  static_assert(kStages == 3, "the page-id prefetch below is written for three stages");
  constexpr int kChunks = D / 8;                    // 16-byte pieces of a row
  constexpr int kRowsPerPass = kThreads / kChunks;  // rows one load pass covers
  constexpr int kPasses = kTile / kRowsPerPass;
  constexpr int kStageElems = 2 * kTile * D;  // K then V
  constexpr int kOStride = D + 8;             // f32 row pitch of the merge buffer (bank spread)

  extern __shared__ __align__(128) unsigned char smem[];
  T* stages = reinterpret_cast<T*>(smem);
  float* sM = reinterpret_cast<float*>(smem + size_t(kStages) * kStageElems * sizeof(T));
  float* sL = sM + kWarps * kRowsPerCta;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int gid = lane >> 2, tig = lane & 3;
  const int kvh = blockIdx.x / a.qChunks, qc = blockIdx.x % a.qChunks;
  const int split = blockIdx.y, b = blockIdx.z;
  const bool splitMode = a.numSplits > 1;

  LT_TIMELINE_TIMES(times);
  LT_TIMELINE_ENTERED(times);
  waitForPrerequisiteGrids();
  LT_TIMELINE_WAITED(times);
  // The kernel after this one (the o projection, which asks L2 for its weights before it waits
  // for this grid) may launch now.
  allowDependentGrids();
  const int len = clampedLen(a.seqLens, b, a.maxPagesPerSeq, a.pageSize);

  // ---- query fragments (A operand), rows = query heads of this CTA, zero past the group ----
  // Loaded before the length is known so the two loads overlap. q (written by the kernel ahead,
  // which this grid may have overlapped), the page table and seqLens are read past L1
  // (ld.global.cg), so no line cached before the wait can be stale.
  const int headBase = kvh * a.group + qc * kRowsPerCta;
  const int rowsHere = min(kRowsPerCta, a.group - qc * kRowsPerCta);
  uint32_t qa[D / 16][4];
  {
    const T* q0 = static_cast<const T*>(a.q) + (size_t(b) * a.hq + headBase + gid) * D + 2 * tig;
    const bool ok0 = gid < rowsHere, ok1 = kRows16 && gid + 8 < rowsHere;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const uint32_t* p0 = reinterpret_cast<const uint32_t*>(q0 + kk * 16);
      const uint32_t* p1 = reinterpret_cast<const uint32_t*>(q0 + 8 * D + kk * 16);
      qa[kk][0] = ok0 ? __ldcg(p0) : 0u;
      qa[kk][2] = ok0 ? __ldcg(p0 + 4) : 0u;
      qa[kk][1] = ok1 ? __ldcg(p1) : 0u;
      qa[kk][3] = ok1 ? __ldcg(p1 + 4) : 0u;
    }
  }

  int start = 0, end = len;
  // With one split that has work (or none: an empty cache), split 0 writes out and lse itself,
  // the bits the merge of its one partial would give; the others have nothing to do.
  const int tiles = (len + kTile - 1) / kTile;
  const int used = splitMode ? splitsWithWork(tiles, a.numSplits) : 1;
  const bool viaPartials = used > 1;
  if (split >= max(used, 1)) {
    LT_TIMELINE_RECORD(attentionTimeline, kTimelineNoTiles, a.pageTable, times);
    return;
  }
  if (viaPartials) {
    start = splitFirstTile(tiles, used, split) * kTile;
    end = min(len, splitFirstTile(tiles, used, split + 1) * kTile);
  }
  const int nTiles = (end - start + kTile - 1) / kTile;

  // ---- producer: this thread copies chunk `lc` of rows lr, lr + kRowsPerPass, ... ----
  const int lc = threadIdx.x % kChunks, lr = threadIdx.x / kChunks;
  const int32_t* table = a.pageTable + size_t(b) * a.maxPagesPerSeq;
  const size_t slotStride = size_t(a.hkv) * D;  // elements between consecutive pool slots
  const T* kSrc = static_cast<const T*>(a.kPages) + size_t(kvh) * D + lc * 8;
  const T* vSrc = static_cast<const T*>(a.vPages) + size_t(kvh) * D + lc * 8;

  // Page ids are read one tile ahead of their use so that the page-table load never sits in
  // front of a copy on the critical path.
  auto fetchPages = [&](int pages[kPasses], int tile) {
#pragma unroll
    for (int i = 0; i < kPasses; ++i) {
      const int tok = start + tile * kTile + lr + i * kRowsPerPass;
      const int pi = a.pageShift >= 0 ? (tok >> a.pageShift) : tok / a.pageSize;
      pages[i] = tok < end ? __ldcg(table + pi) : 0;
    }
  };
  auto issue = [&](const int pages[kPasses], int tile, int stage) {
    T* sK = stages + stage * kStageElems;
    T* sV = sK + kTile * D;
#pragma unroll
    for (int i = 0; i < kPasses; ++i) {
      const int r = lr + i * kRowsPerPass;
      const int tok = start + tile * kTile + r;
      const bool valid = tok < end;
      const int off = a.pageShift >= 0 ? (tok & (a.pageSize - 1)) : tok % a.pageSize;
      const size_t g = valid ? (size_t(pages[i]) * a.pageSize + off) * slotStride : 0;
      cpAsync16(sK + swz<D>(r, lc), kSrc + g, valid);
      cpAsync16(sV + swz<D>(r, lc), vSrc + g, valid);
    }
  };

  int pgA[kPasses], pgB[kPasses];
  fetchPages(pgA, 0);
  fetchPages(pgB, 1);
  if (0 < nTiles) issue(pgA, 0, 0);
  cpAsyncCommit();
  if (1 < nTiles) issue(pgB, 1, 1);
  cpAsyncCommit();
  fetchPages(pgA, 2);

  // ---- consumer state: rows gid (0) and gid + 8 (1) of the warp's m16 tile ----
  float o[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;

  for (int it = 0; it < nTiles; ++it) {
    cpAsyncWait<kStages - 2>();
    // Publishes tile `it` to every warp and frees the stage tile it - 1 used for the refill.
    __syncthreads();
    {
      const int nt = it + kStages - 1;
      if (nt < nTiles) {
        issue(pgA, nt, nt % kStages);
        fetchPages(pgA, nt + 1);
      }
      cpAsyncCommit();
    }

    const T* sK = stages + (it % kStages) * kStageElems;
    const T* sV = sK + kTile * D;
    const int tileStart = start + it * kTile;

    // S = Q Kᵀ for this warp's 16 tokens: two n8 tiles.
    float s[2][4];
#pragma unroll
    for (int j = 0; j < 2; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
    for (int kp = 0; kp < D / 32; ++kp) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int r = warp * 16 + j * 8 + (lane & 7);
        uint32_t kb[4];
        ldsm4(kb, sK + swz<D>(r, kp * 4 + (lane >> 3)));
        Ops<T>::mma(s[j], qa[2 * kp], kb[0], kb[1]);
        Ops<T>::mma(s[j], qa[2 * kp + 1], kb[2], kb[3]);
      }
    }

    // Scores in log2 units; tokens past the end of this split get -inf.
#pragma unroll
    for (int j = 0; j < 2; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int tok = tileStart + warp * 16 + j * 8 + 2 * tig + (e & 1);
        s[j][e] = tok < end ? s[j][e] * a.scaleLog2 : -INFINITY;
      }
    }
    float mx0 = fmaxf(fmaxf(s[0][0], s[0][1]), fmaxf(s[1][0], s[1][1]));
    float mx1 = fmaxf(fmaxf(s[0][2], s[0][3]), fmaxf(s[1][2], s[1][3]));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    if (kRows16) {
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    }
    const float mNew0 = fmaxf(m0, mx0);
    const float mNew1 = kRows16 ? fmaxf(m1, mx1) : m1;
    // After the first tiles the running max rarely moves: skip the D/8*4 rescales then.
    if (__any_sync(0xffffffffu, mNew0 > m0 || mNew1 > m1)) {
      const float al0 = mNew0 == -INFINITY ? 1.f : exp2f(m0 - mNew0);
      const float al1 = mNew1 == -INFINITY ? 1.f : exp2f(m1 - mNew1);
      l0 *= al0;
      l1 *= al1;
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        o[n][0] *= al0;
        o[n][1] *= al0;
        if (kRows16) {
          o[n][2] *= al1;
          o[n][3] *= al1;
        }
      }
      m0 = mNew0;
      m1 = mNew1;
    }
    const float ref0 = m0 == -INFINITY ? 0.f : m0;
    const float ref1 = m1 == -INFINITY ? 0.f : m1;
    float p[2][4];
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      p[j][0] = exp2f(s[j][0] - ref0);
      p[j][1] = exp2f(s[j][1] - ref0);
      p[j][2] = kRows16 ? exp2f(s[j][2] - ref1) : 0.f;
      p[j][3] = kRows16 ? exp2f(s[j][3] - ref1) : 0.f;
    }
    l0 += (p[0][0] + p[0][1]) + (p[1][0] + p[1][1]);
    if (kRows16) l1 += (p[0][2] + p[0][3]) + (p[1][2] + p[1][3]);
    // The S accumulator layout of two n8 tiles is exactly the A fragment of one k16 step.
    uint32_t pa[4];
    pa[0] = Ops<T>::pack(p[0][0], p[0][1]);
    pa[1] = kRows16 ? Ops<T>::pack(p[0][2], p[0][3]) : 0u;
    pa[2] = Ops<T>::pack(p[1][0], p[1][1]);
    pa[3] = kRows16 ? Ops<T>::pack(p[1][2], p[1][3]) : 0u;

    // O += P V: V rows are tokens (k), transposed on load into the B fragment.
#pragma unroll
    for (int u = 0; u < D / 16; ++u) {
      const int r = warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
      uint32_t vb[4];
      ldsm4Trans(vb, sV + swz<D>(r, 2 * u + (lane >> 4)));
      Ops<T>::mma(o[2 * u], pa, vb[0], vb[1]);
      Ops<T>::mma(o[2 * u + 1], pa, vb[2], vb[3]);
    }
  }

  // ---- merge the 4 warps (each saw a quarter of every tile) ----
  cpAsyncWait<0>();
  __syncthreads();  // the stage buffers become the merge buffer
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  if (tig == 0) {
    sM[warp * kRowsPerCta + gid] = m0;
    sL[warp * kRowsPerCta + gid] = l0;
    sM[warp * kRowsPerCta + gid + 8] = m1;
    sL[warp * kRowsPerCta + gid + 8] = l1;
  }
  __syncthreads();
  float* sO = reinterpret_cast<float*>(smem);  // [kWarps][16][kOStride]
  {
    float M0 = -INFINITY, M1 = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      M0 = fmaxf(M0, sM[w * kRowsPerCta + gid]);
      M1 = fmaxf(M1, sM[w * kRowsPerCta + gid + 8]);
    }
    const float f0 = m0 == -INFINITY ? 0.f : exp2f(m0 - M0);
    const float f1 = m1 == -INFINITY ? 0.f : exp2f(m1 - M1);
    float* row0 = sO + (warp * kRowsPerCta + gid) * kOStride + 2 * tig;
    float* row1 = row0 + 8 * kOStride;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      *reinterpret_cast<float2*>(row0 + 8 * n) = make_float2(o[n][0] * f0, o[n][1] * f0);
      if (kRows16) *reinterpret_cast<float2*>(row1 + 8 * n) = make_float2(o[n][2] * f1, o[n][3] * f1);
    }
  }
  __syncthreads();

  for (int item = threadIdx.x; item < kRowsPerCta * kChunks; item += kThreads) {
    const int r = item / kChunks, c = item % kChunks;
    if (r >= rowsHere) continue;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) M = fmaxf(M, sM[w * kRowsPerCta + r]);
    float L = 0.f;
    float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float mw = sM[w * kRowsPerCta + r];
      L += mw == -INFINITY ? 0.f : exp2f(mw - M) * sL[w * kRowsPerCta + r];
      const float4* src = reinterpret_cast<const float4*>(sO + (w * kRowsPerCta + r) * kOStride + c * 8);
      const float4 x = src[0], y = src[1];
      acc[0] += x.x, acc[1] += x.y, acc[2] += x.z, acc[3] += x.w;
      acc[4] += y.x, acc[5] += y.y, acc[6] += y.z, acc[7] += y.w;
    }
    const float inv = L > 0.f ? 1.f / L : 0.f;
    const size_t head = size_t(b) * a.hq + headBase + r;
    if (viaPartials) {
      float4* dst = reinterpret_cast<float4*>(a.oPart + (head * a.numSplits + split) * D + c * 8);
      dst[0] = make_float4(acc[0] * inv, acc[1] * inv, acc[2] * inv, acc[3] * inv);
      dst[1] = make_float4(acc[4] * inv, acc[5] * inv, acc[6] * inv, acc[7] * inv);
      if (c == 0) a.lsePart[head * a.numSplits + split] = L > 0.f ? M + log2f(L) : -INFINITY;
    } else {
      uint4 v;
      v.x = Ops<T>::pack(acc[0] * inv, acc[1] * inv);
      v.y = Ops<T>::pack(acc[2] * inv, acc[3] * inv);
      v.z = Ops<T>::pack(acc[4] * inv, acc[5] * inv);
      v.w = Ops<T>::pack(acc[6] * inv, acc[7] * inv);
      *reinterpret_cast<uint4*>(static_cast<T*>(a.out) + head * D + c * 8) = v;
      if (c == 0 && a.lse) a.lse[head] = L > 0.f ? (M + log2f(L)) * kLn2 : -INFINITY;
    }
  }
  if (!viaPartials) {
    LT_TIMELINE_RECORD(attentionTimeline, kTimelineSplit, a.pageTable, times);
    return;
  }

  // ---- the last split of (sequence, kv head, query chunk) to finish merges them all ----
  // Each CTA's partials are made visible device-wide before it counts itself in. The count wraps
  // to zero in the same atomic when it reaches `used` (so a count left off zero by a launch cut
  // short cannot stay off), ready for the next launch: that one touches it only after its wait
  // for the kernel ahead, which every kernel here begins with, so after this grid has finished.
  // The CTA that wrapped it combines, reading what the others wrote before their counts.
  __shared__ bool lastToArrive;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned int* arrivals = splitArrivals + (size_t(b) * a.hkv + kvh) * a.qChunks + qc;
    lastToArrive = atomicInc(arrivals, unsigned(used - 1)) == unsigned(used - 1);
    if (lastToArrive) __threadfence();
  }
  __syncthreads();
  if (!lastToArrive) {
    LT_TIMELINE_RECORD(attentionTimeline, kTimelineSplit, a.pageTable, times);
    return;
  }
  __threadfence();
  for (int r = warp; r < rowsHere; r += kWarps) combineRow<T, D>(a, b * a.hq + headBase + r, used, lane);
  LT_TIMELINE_RECORD(attentionTimeline, kTimelineMerge, a.pageTable, times);
}

// ---------------------------------------------------------------- host side

template <int D>
constexpr size_t decodeSmemBytes(size_t elemBytes) {
  return size_t(kStages) * 2 * kTile * D * elemBytes + 2 * kWarps * kRowsPerCta * sizeof(float);
}

void checkCuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw Error(std::string("decodeAttention: ") + what + " failed: " + cudaGetErrorString(err));
}

bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

void validateDecode(const DecodeAttentionParams& p) {
  if (p.dtype == DType::F32)
    throw Error("decodeAttention: f32 is CPU-only; the CUDA kernel takes f16 or bf16 (cast q and the K/V pool)");
  if (p.dtype != DType::F16 && p.dtype != DType::BF16)
    throw Error(std::string("decodeAttention: dtype ") + dtypeName(p.dtype) + " is not supported (f16 or bf16)");
  if (p.d != 64 && p.d != 128)
    throw Error("decodeAttention: head dim " + std::to_string(p.d) + " is not supported on CUDA (64 or 128)");
  if (p.batch < 0 || p.hq <= 0 || p.hkv <= 0 || p.hq % p.hkv != 0)
    throw Error("decodeAttention: need batch >= 0 and hq a positive multiple of hkv (got batch " +
                std::to_string(p.batch) + ", hq " + std::to_string(p.hq) + ", hkv " + std::to_string(p.hkv) + ")");
  if (p.batch > 65535)
    throw Error("decodeAttention: batch " + std::to_string(p.batch) +
                " exceeds 65535 sequences per call; split the batch");
  if (p.pageSize <= 0 || p.maxPagesPerSeq <= 0)
    throw Error("decodeAttention: pageSize and maxPagesPerSeq must be positive");
}

// Resident CTAs per SM of one instantiation (after raising its shared-memory limit, which is
// per device), cached per device: decode runs for every layer of every step.
template <typename T, int D, bool R>
int prepareKernel() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cached[kMaxDevices];  // 0: not prepared on that device yet
  int dev = 0;
  checkCuda(cudaGetDevice(&dev), "cudaGetDevice");
  if (dev >= 0 && dev < kMaxDevices) {
    const int known = cached[dev].load(std::memory_order_relaxed);
    if (known > 0) return known;
  }
  const size_t smemBytes = decodeSmemBytes<D>(sizeof(T));
  checkCuda(cudaFuncSetAttribute(&decodeKernel<T, D, R>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smemBytes)),
            "raising the shared-memory limit");
  int blocks = 0;
  checkCuda(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, &decodeKernel<T, D, R>, kThreads, smemBytes),
            "occupancy query");
  blocks = std::max(blocks, 1);
  if (dev >= 0 && dev < kMaxDevices) cached[dev].store(blocks, std::memory_order_relaxed);
  return blocks;
}

int residentBlocks(const DecodeAttentionParams& p, bool rows16) {
  const bool bf = p.dtype == DType::BF16;
  if (p.d == 64) {
    if (bf) return rows16 ? prepareKernel<__nv_bfloat16, 64, true>() : prepareKernel<__nv_bfloat16, 64, false>();
    return rows16 ? prepareKernel<__half, 64, true>() : prepareKernel<__half, 64, false>();
  }
  if (bf) return rows16 ? prepareKernel<__nv_bfloat16, 128, true>() : prepareKernel<__nv_bfloat16, 128, false>();
  return rows16 ? prepareKernel<__half, 128, true>() : prepareKernel<__half, 128, false>();
}

int resolveSmCount(int smCount) {
  if (smCount > 0) return smCount;
  int dev = 0, sms = 0;
  checkCuda(cudaGetDevice(&dev), "cudaGetDevice");
  checkCuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "reading the SM count");
  return std::max(sms, 1);
}

struct Plan {
  int qChunks;
  bool rows16;
  int splits;
};

// Splits are chosen as if every sequence had the table's full capacity (the lengths live on
// the device), never more than one per kMinSplitTiles tiles of it: the fewest splits whose
// wave efficiency is within 5% of the best, then as many more as the same number of waves of
// resident CTAs holds (with the tiles dealt out evenly, each takes tiles off every CTA's path
// and fills a slot that would idle). Filling every slot matters even when bandwidth is the
// limit: a CTA keeps only two tiles in flight, so an SM with one CTA instead of two pulls half
// the bytes.
Plan makePlan(const DecodeAttentionParams& p, int smCount) {
  Plan plan;
  const int group = p.hq / p.hkv;
  plan.qChunks = (group + kRowsPerCta - 1) / kRowsPerCta;
  plan.rows16 = std::min(group, kRowsPerCta) > 8;
  plan.splits = 1;
  if (p.batch == 0) return plan;
  const long long maxTiles = ((long long)p.maxPagesPerSeq * p.pageSize + kTile - 1) / kTile;
  const long long byLen = (maxTiles + kMinSplitTiles - 1) / kMinSplitTiles;
  const int cap = int(std::min<long long>(byLen, kMaxSplits));
  if (cap <= 1) return plan;
  const long long slots = (long long)resolveSmCount(smCount) * residentBlocks(p, plan.rows16);
  const long long base = (long long)p.batch * p.hkv * plan.qChunks;
  if (base > kArrivalCounts) return plan;  // splits pay only where base is a few waves at most
  double eff[kMaxSplits + 1] = {0};
  double best = 0;
  for (int s = 1; s <= cap; ++s) {
    const long long ctas = base * s;
    const long long waves = (ctas + slots - 1) / slots;
    eff[s] = double(ctas) / double(waves * slots);
    best = std::max(best, eff[s]);
  }
  for (int s = 1; s <= cap; ++s) {
    if (eff[s] >= 0.95 * best) {
      plan.splits = s;
      break;
    }
  }
  const long long waves = (base * plan.splits + slots - 1) / slots;
  plan.splits = int(std::min<long long>(cap, waves * slots / base));
  return plan;
}

size_t partialFloats(const DecodeAttentionParams& p, int splits) {
  return size_t(p.batch) * p.hq * splits * (size_t(p.d) + 1);
}

// Programmatic dependent launch (programmatic_launch.cuh): the decode grid's launch overlaps the
// tail of the kernel before it, and the next kernel's launch the decode grid's tail; at batch 1
// those latencies are a visible part of a decode. Asking L2 for the first tiles' K/V rows
// before the wait cost about what the early launch gained (bench/README.md).
template <typename T, int D, bool R>
void launchDecode(const DecodeArgs& args, const Plan& plan, int batch, cudaStream_t stream) {
  const size_t smemBytes = decodeSmemBytes<D>(sizeof(T));
  prepareKernel<T, D, R>();
  const dim3 grid(unsigned(args.hkv * plan.qChunks), unsigned(plan.splits), unsigned(batch));
  launchProgrammatic("decodeAttention", "decodeKernel", decodeKernel<T, D, R>, grid, dim3(kThreads), smemBytes, stream,
                     args);
}

template <typename T>
void dispatchDecode(const DecodeArgs& args, const Plan& plan, int d, int batch, cudaStream_t stream) {
  if (d == 64) {
    if (plan.rows16)
      launchDecode<T, 64, true>(args, plan, batch, stream);
    else
      launchDecode<T, 64, false>(args, plan, batch, stream);
  } else {
    if (plan.rows16)
      launchDecode<T, 128, true>(args, plan, batch, stream);
    else
      launchDecode<T, 128, false>(args, plan, batch, stream);
  }
}

}  // namespace

size_t decodeAttentionWorkspaceBytes(const DecodeAttentionParams& p, int smCount) {
  validateDecode(p);
  const Plan plan = makePlan(p, smCount);
  return plan.splits > 1 ? partialFloats(p, plan.splits) * sizeof(float) : 0;
}

void decodeAttention(const DecodeAttentionParams& p, void* workspace, size_t workspaceBytes, int smCount,
                     cudaStream_t stream) {
  validateDecode(p);
  if (p.batch == 0) return;
  if (!p.q || !p.kPages || !p.vPages || !p.pageTable || !p.seqLens || !p.out)
    throw Error("decodeAttention: q, kPages, vPages, pageTable, seqLens and out must all be set");
  if (!aligned16(p.q) || !aligned16(p.kPages) || !aligned16(p.vPages) || !aligned16(p.out))
    throw Error("decodeAttention: q, kPages, vPages and out must be 16-byte aligned");
  const Plan plan = makePlan(p, smCount);
  const size_t need = plan.splits > 1 ? partialFloats(p, plan.splits) * sizeof(float) : 0;
  if (need > 0 && (workspace == nullptr || workspaceBytes < need || !aligned16(workspace)))
    throw Error("decodeAttention: the workspace must hold decodeAttentionWorkspaceBytes() = " + std::to_string(need) +
                " bytes, 16-byte aligned (got " + std::to_string(workspaceBytes) + ")");

  DecodeArgs args{};
  args.q = p.q, args.kPages = p.kPages, args.vPages = p.vPages;
  args.pageTable = p.pageTable, args.seqLens = p.seqLens;
  args.out = p.out, args.lse = p.lse;
  args.oPart = static_cast<float*>(workspace);
  args.lsePart = plan.splits > 1 ? args.oPart + size_t(p.batch) * p.hq * plan.splits * p.d : nullptr;
  args.hq = p.hq, args.hkv = p.hkv, args.group = p.hq / p.hkv, args.qChunks = plan.qChunks;
  args.pageSize = p.pageSize;
  args.pageShift = (p.pageSize & (p.pageSize - 1)) == 0 ? __builtin_ctz(unsigned(p.pageSize)) : -1;
  args.maxPagesPerSeq = p.maxPagesPerSeq, args.numSplits = plan.splits, args.numPages = p.numPages;
  args.scaleLog2 = p.scale * kLog2e;

  if (p.dtype == DType::BF16)
    dispatchDecode<__nv_bfloat16>(args, plan, p.d, p.batch, stream);
  else
    dispatchDecode<__half>(args, plan, p.d, p.batch, stream);
}

}  // namespace lt::cuda
