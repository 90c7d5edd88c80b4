// Private building blocks shared by the prefill attention kernels (prefill_attention.cu, and
// prefill_attention_sm90.cu for the loads, layouts and tile ranges) and the standalone lazy-ratio
// kernel (lazy_ratio.cu): cp.async tile loads into a swizzled shared-memory layout, ldmatrix/mma.sync m16n8k16
// wrappers, the S = Q·K^T tile product of one warp (32 query rows x 64 keys) and a walk over its elements for masking,
// the sums that end the lazy ratio, and the key tiles a block visits.
//
// Shared-memory layout of every Q/K/V tile of the mma.sync kernels: rows of D 16-bit
// elements, split in 16-byte chunks; chunk c of row r is stored at chunk position c ^ (r & 7).
// ldmatrix reads eight rows at the same logical chunk; the XOR spreads them over all 32 banks,
// so neither the cp.async writes nor the ldmatrix reads conflict. Tile bases are 1024-byte
// aligned, which lets a lane fold the swizzle into a per-lane base and a compile-time XOR (see
// laneBase). The Hopper kernel (prefill_attention_sm90.cu) stores its tiles as column blocks
// instead, the layout wgmma reads (see chunkOffset); for D = 64 the two are the same.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace lt::cuda::detail {

constexpr int kWarps = 4;  // one block = 4 warps
constexpr int kThreads = kWarps * 32;
constexpr int kRowsPerWarp = 32;                // two m16 tiles per warp: B fragments are reused twice
constexpr int kBlockM = kWarps * kRowsPerWarp;  // 128 query rows per block
constexpr int kBlockN = 64;                     // keys per K/V tile

__device__ __forceinline__ uint32_t smemAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte async copy global -> shared; srcBytes = 0 writes zeros (rows past the end), so
// masked keys never multiply garbage (a NaN times a zero probability is still NaN).
__device__ __forceinline__ void cpAsync16(uint32_t dst, const void* src, int srcBytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(srcBytes));
}
__device__ __forceinline__ void cpAsyncCommit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int N>
__device__ __forceinline__ void cpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldsm4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldsm4t(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

template <typename T>
struct Mma;

template <>
struct Mma<__nv_bfloat16> {
  static __device__ __forceinline__ void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  // C = 0: the first k-step of S needs no zeroed registers (ptxas feeds RZ).
  static __device__ __forceinline__ void run0(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%10,%10,%10,%10};\n"
        : "=f"(c[0]), "=f"(c[1]), "=f"(c[2]), "=f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "f"(0.f));
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
};

template <>
struct Mma<__half> {
  static __device__ __forceinline__ void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  static __device__ __forceinline__ void run0(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%10,%10,%10,%10};\n"
        : "=f"(c[0]), "=f"(c[1]), "=f"(c[2]), "=f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "f"(0.f));
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
};

// Byte offset, inside a tile of ROWS rows, of 16-byte chunk `ch` of row `r`. Row-major
// (kColumnBlocks false): rows of D * 2 bytes, chunk position ch ^ (r & 7). Column blocks: the
// tile is D / 64 blocks of 64 columns, each ROWS rows of 128 bytes with chunk position
// (ch & 7) ^ (r & 7): wgmma's 128-byte swizzle, which XORs address bits 4-6 with bits 7-9 of a
// 1024-byte aligned tile. rowBytes: the distance between rows r and r + 1 of one chunk.
template <int D, int ROWS, bool kColumnBlocks>
__device__ __forceinline__ uint32_t chunkOffset(int r, int ch) {
  if constexpr (kColumnBlocks)
    return uint32_t((ch >> 3) * ROWS * 128 + r * 128 + (((ch & 7) ^ (r & 7)) << 4));
  else
    return uint32_t((r * (D / 8) + (ch ^ (r & 7))) * 16);
}
template <int D, bool kColumnBlocks>
constexpr uint32_t rowBytes() {
  return kColumnBlocks ? 128u : uint32_t(D * 2);
}

// How the copy of a tile of ROWS rows splits over NTHREADS threads: thread tid copies 16-byte
// chunk ch = tid % (D/8) of rows r0 + i * kStep (r0 = tid / (D/8), i < kPerThread), which land at
// dOff + i * kDstStep. kStep is a multiple of 8, so the swizzled chunk is the same for all of a
// thread's rows.
template <int D, int ROWS, int NTHREADS, bool kColumnBlocks>
struct TileCopySplit {
  static constexpr int kChunks = D / 8;
  static constexpr int kStep = NTHREADS / kChunks;
  static constexpr int kPerThread = ROWS / kStep;
  static constexpr uint32_t kDstStep = kStep * rowBytes<D, kColumnBlocks>();
  static_assert(ROWS % kStep == 0 && kStep % 8 == 0, "tile must split evenly over the block");
  int ch, r0;
  uint32_t dOff;
  __device__ __forceinline__ explicit TileCopySplit(int tid)
      : ch(tid % kChunks), r0(tid / kChunks), dOff(chunkOffset<D, ROWS, kColumnBlocks>(tid / kChunks, tid % kChunks)) {}
};

// Copies rows [row0, row0 + ROWS) of one or two token-major tensors (row r at g + r *
// rowStride; both share the stride) into swizzled tiles; rows outside [0, rowLimit) become
// zeros. A thread's addresses advance by constants (TileCopySplit): one 64-bit add and one
// cp.async per chunk. (Recomputing row * stride per chunk was ~15% of the main loop's
// instructions.)
template <int D, int ROWS, bool kTwo, int NTHREADS = kThreads, bool kColumnBlocks = false>
__device__ __forceinline__ void loadTiles(uint32_t dst0, uint32_t dst1, const uint16_t* g0, const uint16_t* g1,
                                          int64_t rowStride, int row0, int rowLimit, int tid) {
  using Split = TileCopySplit<D, ROWS, NTHREADS, kColumnBlocks>;
  const Split split(tid);
  const int64_t off = int64_t(row0 + split.r0) * rowStride + split.ch * 8;
  const int64_t step = rowStride * Split::kStep;
  const uint16_t* s0 = g0 + off;
  const uint16_t* s1 = kTwo ? g1 + off : nullptr;
  if (row0 >= 0 && row0 + ROWS <= rowLimit) {  // interior tile: no per-row checks
#pragma unroll
    for (int i = 0; i < Split::kPerThread; i++) {
      cpAsync16(dst0 + split.dOff + i * Split::kDstStep, s0, 16);
      s0 += step;
      if (kTwo) {
        cpAsync16(dst1 + split.dOff + i * Split::kDstStep, s1, 16);
        s1 += step;
      }
    }
  } else {
#pragma unroll
    for (int i = 0; i < Split::kPerThread; i++) {
      const int gr = row0 + split.r0 + i * Split::kStep;
      const bool ok = gr >= 0 && gr < rowLimit;
      cpAsync16(dst0 + split.dOff + i * Split::kDstStep, ok ? s0 : g0, ok ? 16 : 0);
      s0 += step;
      if (kTwo) {
        cpAsync16(dst1 + split.dOff + i * Split::kDstStep, ok ? s1 : g1, ok ? 16 : 0);
        s1 += step;
      }
    }
  }
}

template <int D, int ROWS>
__device__ __forceinline__ void loadTile(uint32_t dst, const uint16_t* g, int64_t rowStride, int row0, int rowLimit,
                                         int tid) {
  loadTiles<D, ROWS, false>(dst, 0u, g, nullptr, rowStride, row0, rowLimit, tid);
}

// One warp copies a 64-row K tile on its own (the lazy-ratio kernel gives each warp its own
// tiles); rows >= rowLimit become zeros.
template <int D>
__device__ __forceinline__ void warpLoadKTile(uint32_t dst, const uint16_t* g, int64_t rowStride, int row0,
                                              int rowLimit, int lane) {
  constexpr int kChunks = D / 8;
  constexpr int kRowsPerPass = 32 / kChunks;
  const int ch = lane % kChunks, rr = lane / kChunks;
  const uint16_t* src = g + int64_t(row0 + rr) * rowStride + ch * 8;
#pragma unroll
  for (int i = 0; i < kBlockN / kRowsPerPass; i++) {
    const int r = rr + i * kRowsPerPass;
    const bool ok = row0 + r < rowLimit;
    cpAsync16(dst + uint32_t((r * kChunks + (ch ^ (r & 7))) * 16), ok ? src : g, ok ? 16 : 0);
    src += rowStride * kRowsPerPass;
  }
}

// Byte offset, inside a tile, of the 16-byte chunk this lane hands to ldmatrix for `row`
// (relative to a 8-row-aligned group) and logical chunk `chunk0`; further chunks 2k of the
// same row are reached by XOR-ing (k << 5): the row base is a multiple of 128 bytes and
// the swizzle only touches the chunk bits.
template <int D>
__device__ __forceinline__ uint32_t laneBase(int row, int chunk0) {
  return uint32_t(row * D * 2 + ((chunk0 ^ (row & 7)) << 4));
}

// S[32 x 64] of one warp: rows [warpRow, warpRow + 32) of the Q tile times the 64 keys of
// the K tile. Accumulators follow the m16n8k16 C layout: s[mi][nt][e] holds row
// 16*mi + lane/4 + 8*(e/2), key 8*nt + 2*(lane%4) + e%2.
template <typename T, int D>
__device__ __forceinline__ void qkTile(float (&s)[2][kBlockN / 8][4], uint32_t sQ, uint32_t sK, int warpRow, int lane) {
  // A (Q, row-major 16x16): matrices (rows 0-7|8-15) x (k 0-7|8-15), lanes 0-15 give rows,
  // lanes 16-31 the second k half.
  const uint32_t qBase = sQ + laneBase<D>(warpRow + (lane & 15), lane >> 4);
  // B (K rows = n, contiguous in k): matrices (n 0-7, k lo), (n 0-7, k hi), (n 8-15, k lo), (n 8-15, k hi).
  const uint32_t kBase = sK + laneBase<D>((lane & 7) + ((lane >> 4) << 3), (lane >> 3) & 1);
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++) {
    uint32_t a[2][4];
#pragma unroll
    for (int mi = 0; mi < 2; mi++) ldsm4(a[mi], (qBase + mi * 16 * D * 2) ^ (kk << 5));
#pragma unroll
    for (int nj = 0; nj < kBlockN / 16; nj++) {
      uint32_t b[4];
      ldsm4(b, (kBase + nj * 16 * D * 2) ^ (kk << 5));
#pragma unroll
      for (int mi = 0; mi < 2; mi++) {
        if (kk == 0) {
          Mma<T>::run0(s[mi][2 * nj], a[mi], b[0], b[1]);
          Mma<T>::run0(s[mi][2 * nj + 1], a[mi], b[2], b[3]);
        } else {
          Mma<T>::run(s[mi][2 * nj], a[mi], b[0], b[1]);
          Mma<T>::run(s[mi][2 * nj + 1], a[mi], b[2], b[3]);
        }
      }
    }
  }
}

// Calls f(mi, nt, e, pos, j) for each accumulator s[mi][nt][e] of qkTile, with pos the
// position of its query row and j its key (pos0: the position of the warp's first row plus
// lane/4; t0: the tile's first key; tq = lane % 4), so the masks of both kernels read
// qkTile's C layout from one place. Fully unrolled: mi, nt and e are constants in f.
template <typename F>
__device__ __forceinline__ void forEachS(int pos0, int t0, int tq, F&& f) {
#pragma unroll
  for (int mi = 0; mi < 2; mi++)
#pragma unroll
    for (int nt = 0; nt < kBlockN / 8; nt++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int pos = pos0 + 16 * mi + 8 * (e >> 1);
        const int j = t0 + 8 * nt + 2 * tq + (e & 1);
        f(mi, nt, e, pos, j);
      }
}

constexpr unsigned kAllLanes = 0xffffffffu;

__device__ __forceinline__ float warpSum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(kAllLanes, v, off);
  return v;
}
// The sum and the max over a quad: the four lanes (lane / 4 equal) that share an accumulator row
// of mma.sync and wgmma alike.
__device__ __forceinline__ float quadSum(float v) {
  v += __shfl_xor_sync(kAllLanes, v, 1);
  return v + __shfl_xor_sync(kAllLanes, v, 2);
}
__device__ __forceinline__ float quadMax(float v) {
  v = fmaxf(v, __shfl_xor_sync(kAllLanes, v, 1));
  return fmaxf(v, __shfl_xor_sync(kAllLanes, v, 2));
}
// Adds one accumulator row's share of the fused lazy ratio to `part`: the quad's partial sums of
// mass on Sink ∪ Recent (lSub) over the row's total, counted by one lane of the quad, and only for
// a row that exists (row >= 0) and is one of the Last rows (row >= firstLastRow).
__device__ __forceinline__ void addLastRowShare(float& part, float lSub, float lTot, int row, int firstLastRow,
                                                int tq) {
  const float ls = quadSum(lSub);
  if (tq == 0 && row >= 0 && row >= firstLastRow && lTot > 0.f) part += ls / lTot;
}

// Waits until THREADS threads of the block (warps in step) have reached named barrier ID (1-15; 0 is
// __syncthreads), for a block part of which has already returned.
template <int ID, int THREADS>
__device__ __forceinline__ void namedBarrierSync() {
  static_assert(ID > 0 && ID < 16 && THREADS % 32 == 0, "a named barrier: id 1-15, whole warps");
  asm volatile("bar.sync %0, %1;\n" ::"n"(ID), "n"(THREADS) : "memory");
}

// The lazy ratio's last step, in both kernels: each warp hands in its sum (lane 0's copy is
// kept, in warpTotals[NWARPS] of shared memory); they are added in a fixed order, so a head
// whose Last rows fit one block gets a deterministic ratio, and total / rows is stored to
// ratio[h], or added (into a buffer the host zeroed) when the Last rows span several blocks.
// Synchronises the NWARPS warps that call it: the block, or with BARRIER > 0 the threads
// [0, 32 * NWARPS) on that named barrier. ratio, rows and atomic are kernel-argument fields
// taken by reference so that only thread 0 loads them, after the barrier, rather than every
// thread before it.
template <int NWARPS, int BARRIER = 0>
__device__ __forceinline__ void writeRatio(float warpTotal, float* warpTotals, float* const& ratio, int h,
                                           const int& rows, const int& atomic, int tid) {
  const int warp = tid >> 5, lane = tid & 31;
  if (lane == 0) warpTotals[warp] = warpTotal;
  if constexpr (BARRIER == 0)
    __syncthreads();
  else
    namedBarrierSync<BARRIER, NWARPS * 32>();
  if (tid == 0) {
    float total = 0.f;
#pragma unroll
    for (int w = 0; w < NWARPS; w++) total += warpTotals[w];
    const float mean = total / float(rows);
    if (atomic)
      atomicAdd(ratio + h, mean);
    else
      ratio[h] = mean;
  }
}

// The key tiles a block of query positions [pMin, pMax] must visit: all tiles up to the
// diagonal for plain causal; for the streaming mask only the sink tiles and the tiles that
// reach into the window of some row, so the cost is O(rows * (sink + window)).
struct TileRange {
  int count;      // tiles to visit
  int sinkEnd;    // the first `sinkEnd` visits are tiles 0..sinkEnd-1
  int tailFirst;  // visit i >= sinkEnd is tile tailFirst + (i - sinkEnd)
  __device__ __forceinline__ int tile(int i) const { return i < sinkEnd ? i : tailFirst + (i - sinkEnd); }
};

// lastKey: the block's largest visible key; sinkKeys: keys [0, sinkKeys) always visited;
// tailFromKey: the first key of the window (streaming) or recent part (ratio). BN: keys per tile.
template <int BN = kBlockN>
__device__ __forceinline__ TileRange makeTileRange(int lastKey, int sinkKeys, int tailFromKey) {
  TileRange t;
  const int lastTile = lastKey / BN;
  t.sinkEnd = min((sinkKeys + BN - 1) / BN, lastTile + 1);
  t.tailFirst = max(max(tailFromKey, 0) / BN, t.sinkEnd);
  t.count = t.sinkEnd + max(lastTile - t.tailFirst + 1, 0);
  return t;
}

}  // namespace lt::cuda::detail
