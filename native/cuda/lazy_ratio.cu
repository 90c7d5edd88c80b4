/*
Standalone lazy ratio (DESIGN.md section 2) from queries, keys and the prefill's LSE.

  q [nq, hq, d] holds the trailing nq queries (positions nk - nq .. nk - 1), k [nk, hkv, d],
  lse [nq, hq]. Last = positions >= nk - lastQueries (all of them if nk < lastQueries);
  only the Last queries present in q count.
  ratio[h] = mean over those queries i of
             sum_{j in Sink ∪ Recent, j <= pos(i)} exp(scale * q_i . k_j - lse[i, h])
  Sink = {j < sink}, Recent = {j >= nk - window}, each key once.

Launch: grid (hq, ceil(rows / 128)) where rows = number of Last queries in q, 256 threads
(8 warps), 161 KiB (d=128) / 81 KiB (d=64) dynamic shared memory.
- The work is tiny (rows x (sink + window) dot products) and latency-bound, so the point
  is to have many K tiles in flight: the block's up-to-128 Last rows form 1, 2 or 4 groups
  of 32, and the warps of a group take every (8 / groups)-th key tile of Sink ∪ Recent,
  each loading its own tile with cp.async while it works on the previous one.
- S = Q K^T on mma.sync (prefill_tiles.cuh); since lse is known, each visible element adds
  exp2(s * scale * log2e - lse * log2e) directly - no running max, and partial sums from
  different warps simply add up.
- Sums go warp -> block in a fixed order, so with lastQueries <= 128 (one block per head)
  the result is deterministic; larger lastQueries accumulate with atomicAdd into the
  zeroed output.
*/
#include <atomic>
#include <cmath>
#include <string>

#include "core/error.h"
#include "cuda/cuda_kernels.h"
#include "cuda/prefill_tiles.cuh"

namespace lt::cuda {
namespace {

using namespace detail;

constexpr int kRatioWarps = 8;
constexpr int kRatioThreads = kRatioWarps * 32;

struct RatioArgs {
  const uint16_t* q;
  const uint16_t* k;
  const float* lse;
  float* ratio;
  int nq, nk, hq, group, numChunks;
  int64_t qStride, kStride;
  float scaleLog2;
  int rows;                // Last rows are [nq - rows, nq)
  int rSink, rRecentFrom;  // Sink ∪ Recent = {j < rSink} ∪ {j >= rRecentFrom}
  int atomic;
};

template <typename T, int D>
__global__ void __launch_bounds__(kRatioThreads) lazyRatioKernel(const RatioArgs a) {
  constexpr int kTileQ = kBlockM * D * 2;
  constexpr int kTileK = kBlockN * D * 2;
  constexpr int kNT = kBlockN / 8;
  extern __shared__ __align__(16) unsigned char smemRaw[];  // aligned by hand below
  __shared__ float part[kRatioWarps];
  const uint32_t sQ = (smemAddr(smemRaw) + 1023u) & ~1023u;

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, tq = lane & 3;
  const int h = blockIdx.x;
  const int kvh = h / a.group;
  const int rowEnd = a.nq - (a.numChunks - 1 - int(blockIdx.y)) * kBlockM;  // one past the chunk
  const int firstRow = max(a.nq - a.rows, rowEnd - kBlockM);
  const int nRows = rowEnd - firstRow;
  const int groups = nRows <= 32 ? 1 : (nRows <= 64 ? 2 : 4);
  const int rg = warp % groups, slot = warp / groups, nSlots = kRatioWarps / groups;
  const int tileRow = kBlockM - 32 * (groups - rg);  // the group's first row inside the Q tile
  const int wRow0 = rowEnd - kBlockM + tileRow;
  const int posOff = a.nk - a.nq;
  const int wpMax = posOff + wRow0 + 31;
  const TileRange tr = makeTileRange(posOff + rowEnd - 1, a.rSink, a.rRecentFrom);

  loadTiles<D, kBlockM, false, kRatioThreads>(sQ, 0u, a.q + h * D, nullptr, a.qStride, rowEnd - kBlockM, a.nq, tid);
  const uint16_t* gk = a.k + kvh * D;
  const uint32_t myK = sQ + kTileQ + warp * kTileK;
  int it = slot;
  if (it < tr.count) warpLoadKTile<D>(myK, gk, a.kStride, tr.tile(it) * kBlockN, a.nk, lane);
  cpAsyncCommit();

  // Per-row lse in base 2; rows outside Last get +inf and so add exp2(-inf) = 0.
  float lse2[2][2];
#pragma unroll
  for (int mi = 0; mi < 2; mi++)
#pragma unroll
    for (int hf = 0; hf < 2; hf++) {
      const int row = wRow0 + 16 * mi + 8 * hf + g;
      lse2[mi][hf] = (row >= firstRow && row >= 0) ? a.lse[int64_t(row) * a.hq + h] * 1.4426950408889634f : INFINITY;
    }
  cpAsyncWait<0>();
  __syncthreads();  // the Q tile, loaded by all threads, is visible to all

  float acc = 0.f;
  for (; it < tr.count; it += nSlots) {
    cpAsyncWait<0>();
    __syncwarp();
    const int t0 = tr.tile(it) * kBlockN;
    float s[2][kNT][4];
    qkTile<T, D>(s, sQ, myK, tileRow, lane);
    __syncwarp();  // every lane is done reading myK: refill it while the exps run
    if (it + nSlots < tr.count) warpLoadKTile<D>(myK, gk, a.kStride, tr.tile(it + nSlots) * kBlockN, a.nk, lane);
    cpAsyncCommit();
    if (t0 > wpMax) continue;
    forEachS(posOff + wRow0 + g, t0, tq, [&](int mi, int nt, int e, int pos, int j) {
      // Membership in Sink ∪ Recent is tested unconditionally: behind `j <= pos &&`, the reads
      // of a's fields stay a branch per element in the lambda instead of one test per key
      // shared by its two rows (~100 more SASS instructions per kernel).
      const bool counted = j < a.rSink || j >= a.rRecentFrom;
      if (j <= pos && counted) acc += exp2f(fmaf(s[mi][nt][e], a.scaleLog2, -lse2[mi][e >> 1]));
    });
  }
  cpAsyncWait<0>();

  writeRatio<kRatioWarps>(warpSum(acc), part, a.ratio, h, a.rows, a.atomic, tid);
}

template <typename T, int D>
void launchRatio(const RatioArgs& a, cudaStream_t stream) {
  constexpr int kSmem = kBlockM * D * 2 + kRatioWarps * kBlockN * D * 2 + 1024;
  static std::atomic<uint64_t> ready{0};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) throw Error("lazyRatio: no current CUDA device");
  const uint64_t bit = dev < 64 ? (uint64_t(1) << dev) : 0;
  if (bit == 0 || !(ready.load(std::memory_order_acquire) & bit)) {
    const cudaError_t e =
        cudaFuncSetAttribute(lazyRatioKernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
    if (e != cudaSuccess)
      throw Error(std::string("lazyRatio: cannot reserve ") + std::to_string(kSmem) +
                  " bytes of shared memory: " + cudaGetErrorString(e));
    ready.fetch_or(bit, std::memory_order_release);
  }
  lazyRatioKernel<T, D><<<dim3(a.hq, a.numChunks), kRatioThreads, kSmem, stream>>>(a);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw Error(std::string("lazyRatio: kernel launch failed: ") + cudaGetErrorString(e));
}

}  // namespace

void lazyRatio(const LazyRatioParams& p, cudaStream_t stream) {
  if (p.dtype == DType::F32) throw Error("lazyRatio: f32 is CPU-only; use f16 or bf16 on CUDA");
  if (p.dtype != DType::F16 && p.dtype != DType::BF16)
    throw Error(std::string("lazyRatio: unsupported dtype ") + dtypeName(p.dtype) + "; use f16 or bf16");
  if (p.d != 64 && p.d != 128)
    throw Error("lazyRatio: head dim " + std::to_string(p.d) + " is not supported on CUDA; use 64 or 128");
  if (p.nq < 1 || p.nk < p.nq)
    throw Error("lazyRatio: need 1 <= nq <= nk, got nq=" + std::to_string(p.nq) + " nk=" + std::to_string(p.nk));
  if (p.hq <= 0 || p.hkv <= 0 || p.hq % p.hkv != 0 || p.hq > INT32_MAX / 2)
    throw Error("lazyRatio: hq must be a positive multiple of hkv, got hq=" + std::to_string(p.hq) +
                " hkv=" + std::to_string(p.hkv));
  if (!(p.scale > 0.f) || !std::isfinite(p.scale)) throw Error("lazyRatio: scale must be positive and finite");
  if (p.spec.lastQueries < 1 || p.spec.sink < 0 || p.spec.window < 0)
    throw Error("lazyRatio: needs lastQueries >= 1, sink >= 0, window >= 0");
  if (p.q == nullptr || p.k == nullptr || p.lse == nullptr || p.ratio == nullptr)
    throw Error("lazyRatio: q, k, lse and ratio must be device pointers");
  auto misaligned = [](const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) != 0; };
  if (misaligned(p.q) || misaligned(p.k)) throw Error("lazyRatio: q and k must be 16-byte aligned");

  // Last positions: [nk - lastQueries, nk) clipped to [0, nk); of those, the ones in q.
  int rows = p.spec.lastQueries < p.nk ? p.spec.lastQueries : p.nk;
  if (rows > p.nq) rows = p.nq;

  RatioArgs a{};
  a.q = static_cast<const uint16_t*>(p.q);
  a.k = static_cast<const uint16_t*>(p.k);
  a.lse = p.lse;
  a.ratio = p.ratio;
  a.nq = p.nq;
  a.nk = p.nk;
  a.hq = p.hq;
  a.group = p.hq / p.hkv;
  a.numChunks = (rows + kBlockM - 1) / kBlockM;
  a.qStride = int64_t(p.hq) * p.d;
  a.kStride = int64_t(p.hkv) * p.d;
  a.scaleLog2 = p.scale * 1.4426950408889634f;
  a.rows = rows;
  a.rSink = p.spec.sink < p.nk ? p.spec.sink : p.nk;
  a.rRecentFrom = p.nk - (p.spec.window < p.nk ? p.spec.window : p.nk);
  a.atomic = a.numChunks > 1 ? 1 : 0;
  if (a.atomic) {
    const cudaError_t e = cudaMemsetAsync(p.ratio, 0, size_t(p.hq) * sizeof(float), stream);
    if (e != cudaSuccess) throw Error(std::string("lazyRatio: cudaMemsetAsync failed: ") + cudaGetErrorString(e));
  }

  if (p.dtype == DType::BF16) {
    if (p.d == 128)
      launchRatio<__nv_bfloat16, 128>(a, stream);
    else
      launchRatio<__nv_bfloat16, 64>(a, stream);
  } else {
    if (p.d == 128)
      launchRatio<__half, 128>(a, stream);
    else
      launchRatio<__half, 64>(a, stream);
  }
}

}  // namespace lt::cuda
