// What the two prefill attention kernels share: their arguments, where a call's keys come from,
// how a K/V tile is loaded (from k/v, or through the page table for a cached prefix) and the
// order in which blocks take (head, query tile). The mma.sync kernel (prefill_attention.cu)
// runs everywhere; the wgmma kernel (prefill_attention_sm90.cu) on sm_90 devices.
#pragma once
#include <atomic>
#include <string>
#include <type_traits>

#include "core/dtype.h"
#include "core/error.h"
#include "cuda/prefill_tiles.cuh"

namespace lt::cuda::detail {

struct PrefillArgs {
  const uint16_t* q;
  const uint16_t* k;
  const uint16_t* v;
  uint16_t* out;
  float* lse;
  float* ratio;
  int nq, nk, hq, group, numQTiles, headGroup;
  int64_t qStride, kvStride;  // elements between consecutive tokens
  float scaleLog2;            // scale * log2(e): softmax runs in base 2
  int stream, sink, window;
  int ratioRows;           // Last = rows [nq - ratioRows, nq); 0 = no ratio
  int rSink, rRecentFrom;  // Sink ∪ Recent = {j < rSink} ∪ {j >= rRecentFrom}
  int ratioAtomic;         // Last spans several blocks: accumulate into a zeroed buffer
};

// A call over a cached prefix. Only the paged kernels take these fields: in PrefillArgs they made
// ptxas spill more in the contiguous kernel, which never reads them. Key j < cachedLen is
// position j of the cache: held iff j < ringSink or j >= ringTailBegin (a full cache: both 0),
// at logical slot j, or for a ring (ringWindow > 0) past its sinks at ringSink + (j - ringSink)
// mod ringWindow.
struct PagedPrefillArgs : PrefillArgs {
  const uint16_t* kPages;
  const uint16_t* vPages;
  const int32_t* pageTable;
  int cachedLen, pageSize, ringSink, ringWindow, ringTailBegin;
  int pageShift;  // log2(pageSize) when pageSize is a power of two, else -1
};

// Where a call's keys come from: k/v alone, or a cached prefix in the page pool (a full cache's
// slots, or a ring's) followed by k/v.
enum class KvSource { Contiguous, PagedFull, PagedRing };

template <KvSource kSource>
using KernelArgs = std::conditional_t<kSource == KvSource::Contiguous, PrefillArgs, PagedPrefillArgs>;

// The K and V tile of keys [key0, key0 + BN) of a call with a cached prefix: the same
// swizzled layout and thread-to-chunk split as loadTiles, but every row finds its own source,
// a pool slot through the page table or a row of k/v; rows past nk, and ring positions no
// longer held, become zeros.
template <int D, bool kRing, int BN, int NTHREADS, bool kColumnBlocks>
__device__ __forceinline__ void loadPagedKvTile(uint32_t dstK, uint32_t dstV, const PagedPrefillArgs& a, int kvh,
                                                int key0, int tid) {
  using Split = TileCopySplit<D, BN, NTHREADS, kColumnBlocks>;
  const Split split(tid);
  const int64_t col = int64_t(kvh) * D + split.ch * 8;
#pragma unroll
  for (int i = 0; i < Split::kPerThread; i++) {
    const int j = key0 + split.r0 + i * Split::kStep;
    const uint16_t* srcK = a.q;  // any valid address: zero-byte copies read nothing
    const uint16_t* srcV = a.q;
    int bytes = 0;
    if (j < a.cachedLen) {
      bool held = true;
      int slot = j;
      if constexpr (kRing) {
        held = j < a.ringSink || j >= a.ringTailBegin;
        if (j >= a.ringSink) slot = a.ringSink + (j - a.ringSink) % a.ringWindow;
      }
      if (held) {
        const bool shift = a.pageShift >= 0;
        const int page = __ldg(a.pageTable + (shift ? slot >> a.pageShift : slot / a.pageSize));
        const int offset = shift ? slot & (a.pageSize - 1) : slot % a.pageSize;
        const int64_t row = int64_t(page) * a.pageSize + offset;
        srcK = a.kPages + row * a.kvStride + col;
        srcV = a.vPages + row * a.kvStride + col;
        bytes = 16;
      }
    } else if (j < a.nk) {
      const int64_t row = j - a.cachedLen;
      srcK = a.k + row * a.kvStride + col;
      srcV = a.v + row * a.kvStride + col;
      bytes = 16;
    }
    const uint32_t dst = split.dOff + uint32_t(i) * Split::kDstStep;
    cpAsync16(dstK + dst, srcK, bytes);
    cpAsync16(dstV + dst, srcV, bytes);
  }
}

// A K/V tile wholly inside a full cache's prefix, with a power-of-two page size: the rows of
// loadPagedKvTile without its per-row checks. Row r's slot is key0 + r, its page the table entry
// slot >> pageShift. kPageSize: a page size known at compile time (a multiple of the rows one
// thread steps by, dividing BN), for which a thread reads each of its pages' table entry once
// and its rows in the page are constant offsets from the page's start; 0: any power of two, one
// table read and 64-bit source per row.
template <int D, int BN, int NTHREADS, bool kColumnBlocks, int kPageSize>
__device__ __forceinline__ void loadCachedKvTile(uint32_t dstK, uint32_t dstV, const PagedPrefillArgs& a, int kvh,
                                                 int key0, int tid) {
  using Split = TileCopySplit<D, BN, NTHREADS, kColumnBlocks>;
  const Split split(tid);
  const int64_t col = int64_t(kvh) * D + split.ch * 8;
  const uint16_t* const kBase = a.kPages + col;
  const uint16_t* const vBase = a.vPages + col;
  if constexpr (kPageSize > 0) {
    static_assert(kPageSize % Split::kStep == 0 && BN % kPageSize == 0, "a page holds whole steps of a thread's rows");
    constexpr int kRowsPerPage = kPageSize / Split::kStep;
    const int pageStride = kPageSize * int(a.kvStride);
    const int64_t rowInPage = int64_t(split.r0) * a.kvStride;
    const int64_t stepStride = int64_t(Split::kStep) * a.kvStride;
    const int32_t* const pages = a.pageTable + key0 / kPageSize;
#pragma unroll
    for (int pg = 0; pg < BN / kPageSize; pg++) {
      const int64_t start = int64_t(__ldg(pages + pg)) * pageStride + rowInPage;
#pragma unroll
      for (int m = 0; m < kRowsPerPage; m++) {
        const uint32_t dst = split.dOff + uint32_t(pg * kRowsPerPage + m) * Split::kDstStep;
        cpAsync16(dstK + dst, kBase + start + m * stepStride, 16);
        cpAsync16(dstV + dst, vBase + start + m * stepStride, 16);
      }
    }
  } else {
    const int slotMask = a.pageSize - 1;
#pragma unroll
    for (int i = 0; i < Split::kPerThread; i++) {
      const int slot = key0 + split.r0 + i * Split::kStep;
      const int page = __ldg(a.pageTable + (slot >> a.pageShift));
      const int64_t row = (int64_t(page) << a.pageShift) + (slot & slotMask);
      cpAsync16(dstK + split.dOff + i * Split::kDstStep, kBase + row * a.kvStride, 16);
      cpAsync16(dstV + split.dOff + i * Split::kDstStep, vBase + row * a.kvStride, 16);
    }
  }
}

// K/V tile `tile` (keys [tile * BN, tile * BN + BN)) into the buffers at dstK/dstV, through the
// page table or from k/v. gk/gv: k/v at this block's kv head, computed once by the caller
// (recomputed per tile, the contiguous kernel spilled more). kByRegion: with a cached prefix, a
// tile past it is the contiguous kernel's copy of k/v, and a tile inside a full cache takes the
// page table without per-row checks; only the tile across the boundary, ring tiles and page
// sizes that are not powers of two check every row. The wgmma kernel's producer warpgroup, which
// does nothing but copy, takes it; in the mma.sync kernel, which copies between its own
// products, the three paths made ptxas spill more (d = 128), so it checks every row.
template <int D, KvSource kSource, int BN = kBlockN, int NTHREADS = kThreads, bool kColumnBlocks = false,
          bool kByRegion = false>
__device__ __forceinline__ void loadKvTile(uint32_t dstK, uint32_t dstV, const KernelArgs<kSource>& a,
                                           const uint16_t* gk, const uint16_t* gv, int kvh, int tile, int tid) {
  const int key0 = tile * BN;
  if constexpr (kSource != KvSource::Contiguous && !kByRegion) {
    loadPagedKvTile<D, kSource == KvSource::PagedRing, BN, NTHREADS, kColumnBlocks>(dstK, dstV, a, kvh, key0, tid);
  } else if constexpr (kSource != KvSource::Contiguous) {
    if (key0 >= a.cachedLen) {
      loadTiles<D, BN, true, NTHREADS, kColumnBlocks>(dstK, dstV, gk, gv, a.kvStride, key0 - a.cachedLen,
                                                      a.nk - a.cachedLen, tid);
    } else if (kSource == KvSource::PagedFull && key0 + BN <= a.cachedLen && a.pageShift >= 0) {
      constexpr int kDefaultPage = 16;  // the pool's default page size
      if (a.pageSize == kDefaultPage)
        loadCachedKvTile<D, BN, NTHREADS, kColumnBlocks, kDefaultPage>(dstK, dstV, a, kvh, key0, tid);
      else
        loadCachedKvTile<D, BN, NTHREADS, kColumnBlocks, 0>(dstK, dstV, a, kvh, key0, tid);
    } else {
      loadPagedKvTile<D, kSource == KvSource::PagedRing, BN, NTHREADS, kColumnBlocks>(dstK, dstV, a, kvh, key0, tid);
    }
  } else {
    loadTiles<D, BN, true, NTHREADS, kColumnBlocks>(dstK, dstV, gk, gv, a.kvStride, key0, a.nk, tid);
  }
}

// Block order. The grid is 1-D; block L maps to (head, query tile) so that heads are taken in
// groups of `headGroup` and, inside a group, tiles run from the last (longest causal rows)
// to the first with the group's heads fastest. Longest-first keeps the last wave short (one head
// per group, as FlashAttention-2 orders them, loses time to the tail at short prompts); few heads
// per group keep the K/V being read at one time inside L2 (all heads in one group loses time at
// 16-32K; bench/README.md, "Figures behind choices in the code"). The host picks the smallest
// group whose heaviest tile is short next to the group's work per slot.
struct BlockCoord {
  int h, qt;
};
__device__ __forceinline__ BlockCoord blockCoord(int numQTiles, int hq, int headGroup) {
  const int L = int(blockIdx.x);
  const int span = headGroup * numQTiles;
  const int grp = L / span;
  const int rem = L - grp * span;
  const int gh = min(headGroup, hq - grp * headGroup);  // a smaller last group, if hq % headGroup
  const int rank = rem / gh;                            // 0 = longest tile
  return {grp * headGroup + (rem - rank * gh), numQTiles - 1 - rank};
}
// The same, from a block index the compiler cannot see through: the epilogue recomputes
// its coordinates instead of keeping them live across the main loop, where every register
// is taken (keeping them costs spills).
__device__ __forceinline__ BlockCoord blockCoordAgain(int numQTiles, int hq, int headGroup) {
  unsigned L;
  asm volatile("mov.u32 %0, %%ctaid.x;" : "=r"(L));
  const int span = headGroup * numQTiles;
  const int grp = int(L) / span;
  const int rem = int(L) - grp * span;
  const int gh = min(headGroup, hq - grp * headGroup);
  const int rank = rem / gh;
  return {grp * headGroup + (rem - rank * gh), numQTiles - 1 - rank};
}

// Lets `kernel` use `bytes` of dynamic shared memory on the current device, once per device (up
// to 64 devices are remembered in `ready`, one word per kernel).
inline void reserveSharedMemory(const void* kernel, int bytes, std::atomic<uint64_t>& ready) {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) throw Error("prefillAttention: no current CUDA device");
  const uint64_t bit = dev < 64 ? (uint64_t(1) << dev) : 0;
  if (bit != 0 && (ready.load(std::memory_order_acquire) & bit)) return;
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (e == cudaSuccess)
    e = cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared);
  if (e != cudaSuccess)
    throw Error(std::string("prefillAttention: cannot reserve ") + std::to_string(bytes) +
                " bytes of shared memory: " + cudaGetErrorString(e));
  ready.fetch_or(bit, std::memory_order_release);
}

// Launches one instantiation of a prefill kernel over the call's grid of (head, query tile) blocks;
// `ready` remembers the devices on which its shared memory is reserved.
// `more`: the kernel's parameters after the call's arguments.
template <typename Args, typename... More>
void launchPrefillKernel(void (*kernel)(Args, More...), int threads, int smemBytes, std::atomic<uint64_t>& ready,
                         const Args& a, cudaStream_t stream, const More&... more) {
  reserveSharedMemory(reinterpret_cast<const void*>(kernel), smemBytes, ready);
  const dim3 grid(unsigned(a.numQTiles) * unsigned(a.hq));
  kernel<<<grid, threads, smemBytes, stream>>>(a, more...);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw Error(std::string("prefillAttention: kernel launch failed: ") + cudaGetErrorString(e));
}

// Calls launch.run<T, D, kSource>(a) for a call's element type (F16 or BF16), head dim (64 or 128)
// and key source: the one list of each kernel's instantiations.
template <typename Launcher>
void dispatchPrefill(const PagedPrefillArgs& a, DType dtype, int d, const Launcher& launch) {
  auto bySource = [&](auto type, auto dim) {
    using T = decltype(type);
    constexpr int D = decltype(dim)::value;
    if (a.cachedLen == 0)
      launch.template run<T, D, KvSource::Contiguous>(a);
    else if (a.ringWindow > 0)
      launch.template run<T, D, KvSource::PagedRing>(a);
    else
      launch.template run<T, D, KvSource::PagedFull>(a);
  };
  using D128 = std::integral_constant<int, 128>;
  using D64 = std::integral_constant<int, 64>;
  if (dtype == DType::BF16) {
    if (d == 128)
      bySource(__nv_bfloat16{}, D128{});
    else
      bySource(__nv_bfloat16{}, D64{});
  } else {
    if (d == 128)
      bySource(__half{}, D128{});
    else
      bySource(__half{}, D64{});
  }
}

// The wgmma kernel's launch (prefill_attention_sm90.cu, built for sm_90a only): call it on
// devices of compute capability 9.0 alone. dtype: F16 or BF16; d: 64 or 128.
void launchPrefillSm90(const PagedPrefillArgs& a, DType dtype, int d, cudaStream_t stream);
// Blocks of the wgmma kernel resident per SM, for the host's choice of head group.
constexpr int kSm90BlocksPerSm = 1;

}  // namespace lt::cuda::detail
