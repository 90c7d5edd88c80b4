/*
Prefill attention (FlashAttention-2 style) for one sequence, f16/bf16 in, f32 accumulate.

  out[i, h, :] = softmax_j(scale * q[i, h, :] . k[j, g(h), :]) v[j, g(h), :]
  g(h) = h / (hq / hkv)                  (GQA)
  query i sits at position pos(i) = nk - nq + i; key j is visible iff j <= pos(i) and,
  with the streaming mask, (j < sink or pos(i) - j < window).
  Optional: lse[i, h] = ln sum_j exp(scale * s_ij) over visible j, and the fused lazy ratio
  (DESIGN.md section 2): the mean, over the last `lastQueries` positions, of the softmax
  mass on Sink ∪ Recent.

Launch: 1-D grid of hq * ceil(nq / 128) blocks, 128 threads (4 warps), 97 KiB (d=128) /
49 KiB (d=64) of dynamic shared memory, two blocks per SM.
- A block owns 128 query rows of one head. Tiles are aligned to the END of the query range
  (the first tile may start at a negative row), so the last <=128 rows - where the lazy
  ratio's queries live - always share one block and the ratio needs no atomics.
- Blocks are dispatched longest-causal-rows first within groups of a few heads (see
  blockCoord): short tail, and the K/V being read at one time stays in L2.
- Each warp owns 32 rows (two m16 tiles): every K/V fragment read from shared memory feeds
  two mma's, which is what keeps shared-memory bandwidth below the tensor-core rate.
- K/V tiles of 64 keys are double-buffered with cp.async: tile i+1 streams in while tile i
  is computed; one __syncthreads per tile.
- S = Q K^T with mma.sync m16n8k16 (A and B via ldmatrix from the swizzled tiles), online
  softmax on the S accumulators in registers (base 2, scale folded into one FMA), then P is
  repacked in registers as the A operand of O += P V (B via ldmatrix.trans).
- Only key tiles that some row can see are visited (prefill_tiles.cuh TileRange), so the
  streaming mask costs O(nq * (sink + window)); the per-element mask runs only on tiles
  that are partly visible, and a warp skips a tile that none of its rows can see.
- Fused lazy ratio: the warps holding Last rows keep, beside the running sum l, a second
  running sum restricted to Sink ∪ Recent keys, rescaled with the same factor; mass = ratio
  of the two at the end. Same distribution as the output by construction.
- A cached prefix (a later chunk of a prompt, DESIGN.md section 4) is read through the
  sequence's page table: keys [0, cachedLen) come from the page pool, each tile row looking
  up its page once when the tile is issued (a shift and a mask for power-of-two pages), and
  keys from cachedLen on from k/v. A ring's positions it no longer holds are never visible,
  and load as zeros. Contiguous, paged full-cache and paged ring calls are separate
  instantiations, so each carries only its own address arithmetic.
- The epilogue stages O through the warp's own Q rows in shared memory so the global
  stores are 16-byte and row-contiguous.
*/
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "cuda/cuda_kernels.h"
#include "cuda/prefill_kernel_args.cuh"

namespace lt::cuda {
namespace {

using namespace detail;

// The work of one block. kRatio: this block holds Last rows and computes the lazy ratio.
template <typename T, int D, bool kRatio, KvSource kSource>
__device__ __forceinline__ void prefillBlock(const KernelArgs<kSource>& a, unsigned char* smemRaw, float* ratioPart) {
  constexpr int kTileQ = kBlockM * D * 2;
  constexpr int kTileKV = kBlockN * D * 2;
  constexpr int kNT = kBlockN / 8;  // n8 tiles of S
  constexpr int kDT = D / 8;        // n8 tiles of O
  const uint32_t rawAddr = smemAddr(smemRaw);
  const uint32_t sQ = (rawAddr + 1023u) & ~1023u;  // the swizzle arithmetic wants 1 KiB alignment
  const uint32_t sK = sQ + kTileQ;
  const uint32_t sV = sK + 2 * kTileKV;
  unsigned char* const sQPtr = smemRaw + (sQ - rawAddr);

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const BlockCoord bc = blockCoord(a.numQTiles, a.hq, a.headGroup);
  int h = bc.h;
  const int kvh = h / a.group;
  const int qt = bc.qt;
  const int rowStart = a.nq - (a.numQTiles - qt) * kBlockM;
  const int posOff = a.nk - a.nq;
  const int pMinB = posOff + max(rowStart, 0);
  const int pMaxB = posOff + rowStart + kBlockM - 1;
  const TileRange tr = a.stream ? makeTileRange(pMaxB, a.sink, pMinB - a.window + 1) : makeTileRange(pMaxB, 0, 0);

  const uint16_t* gq = a.q + h * D;
  loadTile<D, kBlockM>(sQ, gq, a.qStride, rowStart, a.nq, tid);
  const uint16_t* gk = a.k + kvh * D;
  const uint16_t* gv = a.v + kvh * D;
  if (tr.count > 0) loadKvTile<D, kSource>(sK, sV, a, gk, gv, kvh, tr.tile(0), tid);
  cpAsyncCommit();

  int wRow0 = rowStart + warp * kRowsPerWarp;  // may be negative in the first tile
  const bool warpLive = wRow0 + kRowsPerWarp - 1 >= 0;
  const int wpMin = posOff + max(wRow0, 0);
  const int wpMax = posOff + wRow0 + kRowsPerWarp - 1;
  const bool doRatio = kRatio && wRow0 + kRowsPerWarp - 1 >= a.nq - a.ratioRows;
  const int g = lane >> 2, tq = lane & 3;

  float o[2][kDT][4];
#pragma unroll
  for (int mi = 0; mi < 2; mi++)
#pragma unroll
    for (int nt = 0; nt < kDT; nt++)
#pragma unroll
      for (int e = 0; e < 4; e++) o[mi][nt][e] = 0.f;
  float mRow[2][2], lRow[2][2], lSub[2][2];
#pragma unroll
  for (int mi = 0; mi < 2; mi++)
#pragma unroll
    for (int hf = 0; hf < 2; hf++) {
      mRow[mi][hf] = -INFINITY;
      lRow[mi][hf] = 0.f;
      lSub[mi][hf] = 0.f;
    }

  // Per-lane ldmatrix.trans base for V: matrices (keys 0-7|8-15) x (d lo|hi).
  const uint32_t vLane = laneBase<D>((lane & 7) + (((lane >> 3) & 1) << 3), lane >> 4);

  for (int it = 0; it < tr.count; it++) {
    cpAsyncWait<0>();
    __syncthreads();  // tile `it` visible to all; everyone is done with buffer (it+1)&1
    if (it + 1 < tr.count) {
      const uint32_t nb = ((it + 1) & 1) * kTileKV;
      loadKvTile<D, kSource>(sK + nb, sV + nb, a, gk, gv, kvh, tr.tile(it + 1), tid);
    }
    cpAsyncCommit();

    const int t0 = tr.tile(it) * kBlockN;
    const int t1 = t0 + kBlockN - 1;
    const bool anyVisible = warpLive && t0 <= wpMax && (!a.stream || t0 < a.sink || t1 + a.window - 1 >= wpMin);
    if (!anyVisible) continue;
    const uint32_t bufK = sK + (it & 1) * kTileKV;
    const uint32_t bufV = sV + (it & 1) * kTileKV;

    float s[2][kNT][4];
    qkTile<T, D>(s, sQ, bufK, warp * kRowsPerWarp, lane);

    const bool allVisible = t1 <= wpMin && (!a.stream || t1 < a.sink || wpMax - t0 < a.window);
    if (!allVisible) {  // diagonal and window-edge tiles only
      forEachS(posOff + wRow0 + g, t0, tq, [&](int mi, int nt, int e, int pos, int j) {
        const bool vis = j <= pos && (!a.stream || j < a.sink || pos - j < a.window);
        if (!vis) s[mi][nt][e] = -INFINITY;
      });
    }

    float alpha[2][2];
#pragma unroll
    for (int mi = 0; mi < 2; mi++)
#pragma unroll
      for (int hf = 0; hf < 2; hf++) {
        float mx = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < kNT; nt++) mx = fmaxf(mx, fmaxf(s[mi][nt][2 * hf], s[mi][nt][2 * hf + 1]));
        mx = quadMax(mx);
        const float mNew = fmaxf(mRow[mi][hf], mx * a.scaleLog2);
        // A row with nothing visible yet keeps max -inf; subtracting 0 instead keeps
        // exp2(-inf - m) at 0 rather than NaN.
        const float mUse = mNew == -INFINITY ? 0.f : mNew;
        alpha[mi][hf] = exp2f(mRow[mi][hf] - mUse);
        mRow[mi][hf] = mNew;
        float sum = 0.f;
#pragma unroll
        for (int nt = 0; nt < kNT; nt++)
#pragma unroll
          for (int e = 0; e < 2; e++) {
            const float p = exp2f(fmaf(s[mi][nt][2 * hf + e], a.scaleLog2, -mUse));
            s[mi][nt][2 * hf + e] = p;
            sum += p;
          }
        // l stays a per-lane partial sum; the quad shares alpha, so the 4 partials are
        // added once at the end.
        lRow[mi][hf] = lRow[mi][hf] * alpha[mi][hf] + sum;
      }

    // Once the running max settles (most tiles) alpha is 1 for the whole warp: skip the
    // 2*D multiplies per lane.
    const bool rescale = alpha[0][0] != 1.f || alpha[0][1] != 1.f || alpha[1][0] != 1.f || alpha[1][1] != 1.f;
    if (__any_sync(kAllLanes, rescale)) {
#pragma unroll
      for (int mi = 0; mi < 2; mi++)
#pragma unroll
        for (int nt = 0; nt < kDT; nt++) {
          o[mi][nt][0] *= alpha[mi][0];
          o[mi][nt][1] *= alpha[mi][0];
          o[mi][nt][2] *= alpha[mi][1];
          o[mi][nt][3] *= alpha[mi][1];
        }
    }

    if (doRatio) {
      const bool hits = t0 < a.rSink || t1 >= a.rRecentFrom;
#pragma unroll
      for (int mi = 0; mi < 2; mi++)
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
          float sub = 0.f;
          if (hits) {
#pragma unroll
            for (int nt = 0; nt < kNT; nt++)
#pragma unroll
              for (int e = 0; e < 2; e++) {
                const int j = t0 + 8 * nt + 2 * tq + e;
                if (j < a.rSink || j >= a.rRecentFrom) sub += s[mi][nt][2 * hf + e];
              }
          }
          lSub[mi][hf] = lSub[mi][hf] * alpha[mi][hf] + sub;
        }
    }

    // O += P V. The S accumulators of n-tiles 2kk and 2kk+1 are exactly the A fragment of
    // k-step kk, so P never leaves registers.
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; kk++) {
      uint32_t pa[2][4];
#pragma unroll
      for (int mi = 0; mi < 2; mi++) {
        pa[mi][0] = Mma<T>::pack(s[mi][2 * kk][0], s[mi][2 * kk][1]);
        pa[mi][1] = Mma<T>::pack(s[mi][2 * kk][2], s[mi][2 * kk][3]);
        pa[mi][2] = Mma<T>::pack(s[mi][2 * kk + 1][0], s[mi][2 * kk + 1][1]);
        pa[mi][3] = Mma<T>::pack(s[mi][2 * kk + 1][2], s[mi][2 * kk + 1][3]);
      }
      const uint32_t vRow = bufV + vLane + kk * 16 * D * 2;
#pragma unroll
      for (int dj = 0; dj < D / 16; dj++) {
        uint32_t b[4];
        ldsm4t(b, vRow ^ (dj << 5));
#pragma unroll
        for (int mi = 0; mi < 2; mi++) {
          Mma<T>::run(o[mi][2 * dj], pa[mi], b[0], b[1]);
          Mma<T>::run(o[mi][2 * dj + 1], pa[mi], b[2], b[3]);
        }
      }
    }
  }

  // ---- epilogue ----
  cpAsyncWait<0>();  // with zero tiles the Q load may still be landing in the staging rows
  {
    const BlockCoord again = blockCoordAgain(a.numQTiles, a.hq, a.headGroup);
    h = again.h;
    wRow0 = a.nq - (a.numQTiles - again.qt) * kBlockM + warp * kRowsPerWarp;
  }
  float lTot[2][2];
#pragma unroll
  for (int mi = 0; mi < 2; mi++)
#pragma unroll
    for (int hf = 0; hf < 2; hf++) lTot[mi][hf] = quadSum(lRow[mi][hf]);
  __syncwarp();
#pragma unroll
  for (int mi = 0; mi < 2; mi++)
#pragma unroll
    for (int hf = 0; hf < 2; hf++) {
      const float inv = lTot[mi][hf] > 0.f ? 1.f / lTot[mi][hf] : 0.f;  // empty row -> zeros
      const int r = warp * kRowsPerWarp + 16 * mi + 8 * hf + g;         // r & 7 == g
      unsigned char* rowPtr = sQPtr + r * D * 2 + tq * 4;
#pragma unroll
      for (int nt = 0; nt < kDT; nt++)
        *reinterpret_cast<uint32_t*>(rowPtr + ((nt ^ g) << 4)) =
            Mma<T>::pack(o[mi][nt][2 * hf] * inv, o[mi][nt][2 * hf + 1] * inv);
      const int row = wRow0 + 16 * mi + 8 * hf + g;
      if (a.lse != nullptr && tq == 0 && row >= 0) {
        const float l = lTot[mi][hf];
        a.lse[int64_t(row) * a.hq + h] = l > 0.f ? (mRow[mi][hf] + __log2f(l)) * 0.69314718055994531f : -INFINITY;
      }
    }
  __syncwarp();
  {
    constexpr int kChunks = D / 8;
    constexpr int kRowsPerPass = 32 / kChunks;
    const int ch = lane % kChunks;
#pragma unroll
    for (int i = 0; i < kRowsPerWarp / kRowsPerPass; i++) {
      const int rl = lane / kChunks + i * kRowsPerPass;
      const int r = warp * kRowsPerWarp + rl;
      const int row = wRow0 + rl;
      if (row >= 0) {
        const uint4 val = *reinterpret_cast<const uint4*>(sQPtr + (r * kChunks + (ch ^ (r & 7))) * 16);
        *reinterpret_cast<uint4*>(a.out + int64_t(row) * a.qStride + h * D + ch * 8) = val;
      }
    }
  }

  if (kRatio) {
    float part = 0.f;
    if (doRatio) {
#pragma unroll
      for (int mi = 0; mi < 2; mi++)
#pragma unroll
        for (int hf = 0; hf < 2; hf++)
          addLastRowShare(part, lSub[mi][hf], lTot[mi][hf], wRow0 + 16 * mi + 8 * hf + g, a.nq - a.ratioRows, tq);
      part = warpSum(part);
    }
    writeRatio<kWarps>(part, ratioPart, a.ratio, h, a.ratioRows, a.ratioAtomic, tid);
  }
}

// One kernel for plain and fused calls. Only the (usually one per head) blocks holding Last
// rows take the ratio path, so the ratio costs the grid nothing but those blocks' extra work,
// and both kinds of call run the same machine code: a separate instantiation for the fused
// call ran slower or faster than the plain one from register allocation alone (bench/README.md).
// Calls over a cached prefix get their own instantiations
// (kSource), so the page lookups cost the contiguous kernel no registers.
template <typename T, int D, KvSource kSource>
__global__ void __launch_bounds__(kThreads, 2) prefillKernel(const KernelArgs<kSource> a) {
  extern __shared__ __align__(16) unsigned char smemRaw[];  // aligned by hand in prefillBlock
  __shared__ float ratioPart[kWarps];
  if (a.ratioRows > 0) {
    const int qt = blockCoord(a.numQTiles, a.hq, a.headGroup).qt;
    const int rowEnd = a.nq - (a.numQTiles - 1 - qt) * kBlockM;  // one past the block's last row
    if (rowEnd > a.nq - a.ratioRows) {
      prefillBlock<T, D, true, kSource>(a, smemRaw, ratioPart);
      return;
    }
  }
  prefillBlock<T, D, false, kSource>(a, smemRaw, ratioPart);
}

// What the host's choices need to know about the current device, read once per device.
struct DeviceFacts {
  int sms, major, minor;
};
DeviceFacts currentDevice() {
  static std::atomic<int> cache[64];  // sms << 8 | major << 4 | minor; 0 = not read yet
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) throw Error("prefillAttention: no current CUDA device");
  int packed = dev < 64 ? cache[dev].load(std::memory_order_relaxed) : 0;
  if (packed == 0) {
    int sms = 0, major = 0, minor = 0;
    if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || sms <= 0) sms = 132;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess)
      throw Error("prefillAttention: cannot read the device's compute capability");
    packed = sms << 8 | (major & 15) << 4 | (minor & 15);
    if (dev < 64) cache[dev].store(packed, std::memory_order_relaxed);
  }
  return {packed >> 8, (packed >> 4) & 15, packed & 15};
}

// The kernel a call runs on: its own choice, else LIGHTTRANSFER_PREFILL_KERNEL (read on every
// call, so a benchmark can switch kernels between runs in one process), else Auto. The wgmma
// kernel is built for sm_90a, which runs on compute capability 9.0 alone; Auto takes it there and
// the mma.sync kernel everywhere else.
bool useWgmma(PrefillKernel asked, const DeviceFacts& dev) {
  const char* env = asked == PrefillKernel::Unspecified ? std::getenv("LIGHTTRANSFER_PREFILL_KERNEL") : nullptr;
  const bool fromEnv = env != nullptr && *env != 0;
  PrefillKernel choice = asked;
  if (asked == PrefillKernel::Unspecified)
    choice = fromEnv ? parsePrefillKernel(env, "prefillAttention: LIGHTTRANSFER_PREFILL_KERNEL",
                                          "; unset it for the default")
                     : PrefillKernel::Auto;
  const bool hopper = dev.major == 9 && dev.minor == 0;
  if (choice == PrefillKernel::Wgmma && !hopper)
    throw Error("prefillAttention: the wgmma kernel needs a GPU of compute capability 9.0 (H100, H200), this one is " +
                std::to_string(dev.major) + "." + std::to_string(dev.minor) +
                (fromEnv ? "; LIGHTTRANSFER_PREFILL_KERNEL=wgmma asked for it: unset it or set it to auto"
                         : "; ask for kernel 'auto' or 'mmaSync'"));
  return choice == PrefillKernel::Wgmma || (choice == PrefillKernel::Auto && hopper);
}

// Heads per scheduling group (see blockCoord). slots: blocks resident at once (SMs times blocks
// per SM). A group's longest tile (2 * numQTiles key tiles) must be short next to the group's
// work per slot (about headGroup * numQTiles^2 / slots key tiles), or the tail after the last
// group starts grows; we ask for headGroup >= LT_PREFILL_GROUP_FACTOR * slots / numQTiles. The
// group is a divisor of hq (an odd-sized last group makes its own tail) and a whole number
// of GQA groups, so heads sharing K/V run together. Both extremes lost time: one head per
// group (the FlashAttention-2 order) at short prompts, all heads in one group at long ones
// (bench/README.md, "Figures behind choices in the code").
int headGroupFor(int numQTiles, int hq, int gqa, long slots) {
#if defined(LT_PREFILL_TILE_MAJOR)
  return 1;
#elif defined(LT_PREFILL_GLOBAL_LPT)
  return hq;
#else
#ifndef LT_PREFILL_GROUP_FACTOR
#define LT_PREFILL_GROUP_FACTOR 4
#endif
  const long want = (LT_PREFILL_GROUP_FACTOR * slots + numQTiles - 1) / numQTiles;
  for (int g = gqa; g < hq; g += gqa)
    if (hq % g == 0 && g >= want) return g;
  return hq;
#endif
}

struct MmaSyncLaunch {
  cudaStream_t stream;
  template <typename T, int D, KvSource kSource>
  void run(const KernelArgs<kSource>& a) const {
    static std::atomic<uint64_t> ready{0};
    launchPrefillKernel(prefillKernel<T, D, kSource>, kThreads, kBlockM * D * 2 + 4 * kBlockN * D * 2 + 1024, ready, a,
                        stream);
  }
};

}  // namespace

void prefillAttention(const PrefillAttentionParams& p, cudaStream_t stream) {
  if (p.dtype == DType::F32) throw Error("prefillAttention: f32 is CPU-only; use f16 or bf16 on CUDA");
  if (p.dtype != DType::F16 && p.dtype != DType::BF16)
    throw Error(std::string("prefillAttention: unsupported dtype ") + dtypeName(p.dtype) + "; use f16 or bf16");
  if (p.d != 64 && p.d != 128)
    throw Error("prefillAttention: head dim " + std::to_string(p.d) + " is not supported on CUDA; use 64 or 128");
  if (p.nq < 0 || p.nk < p.nq)
    throw Error("prefillAttention: need 0 <= nq <= nk, got nq=" + std::to_string(p.nq) + " nk=" + std::to_string(p.nk));
  if (p.hq <= 0 || p.hkv <= 0 || p.hq % p.hkv != 0)
    throw Error("prefillAttention: hq must be a positive multiple of hkv, got hq=" + std::to_string(p.hq) +
                " hkv=" + std::to_string(p.hkv));
  if (int64_t(p.hq) * ((p.nq + kBlockM - 1) / kBlockM) > INT32_MAX)
    throw Error("prefillAttention: hq * ceil(nq / 128) must fit in 2^31 blocks; split the call into chunks");
  if (!(p.scale > 0.f) || !std::isfinite(p.scale)) throw Error("prefillAttention: scale must be positive and finite");
  if (p.mask.enabled && (p.mask.sink < 0 || p.mask.window < 0))
    throw Error("prefillAttention: streaming mask needs sink >= 0 and window >= 0");
  const bool wantRatio = p.lazyRatio != nullptr && p.ratio.enabled;
  int ratioRows = 0;
  if (wantRatio) {
    if (p.ratio.lastQueries < 1 || p.ratio.sink < 0 || p.ratio.window < 0)
      throw Error("prefillAttention: lazy ratio needs lastQueries >= 1, sink >= 0, window >= 0");
    ratioRows = p.ratio.lastQueries < p.nk ? p.ratio.lastQueries : p.nk;
    if (p.nq < ratioRows)
      throw Error("prefillAttention: the lazy ratio needs the last " + std::to_string(ratioRows) +
                  " query positions in this call, but it holds only " + std::to_string(p.nq) +
                  "; compute the ratio in the final chunk or with lazyRatio()");
  }
  const CachedPrefix& c = p.cached;
  const int cachedLen = c.enabled ? c.length : 0;
  if (cachedLen < 0 || cachedLen > p.nk)
    throw Error("prefillAttention: the cached prefix of " + std::to_string(cachedLen) +
                " positions is longer than the " + std::to_string(p.nk) + " keys");
  if (c.enabled && (c.pageSize <= 0 || (c.ring && (c.ringSink < 0 || c.ringWindow <= 0))))
    throw Error("prefillAttention: the cached prefix needs pageSize > 0 and, for a ring, sink >= 0 and window > 0");
  const DeviceFacts dev = currentDevice();
  const bool wgmma = useWgmma(p.kernel, dev);  // before the empty call returns, so a bad choice is refused either way
  if (p.nq == 0) return;
  const bool ownKeys = p.nk > cachedLen;
  if (p.q == nullptr || p.out == nullptr || (ownKeys && (p.k == nullptr || p.v == nullptr)) ||
      (cachedLen > 0 && (c.kPages == nullptr || c.vPages == nullptr || c.pageTable == nullptr)))
    throw Error("prefillAttention: q, k, v, out and the cached pages must be device pointers");
  auto misaligned = [](const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) != 0; };
  if (misaligned(p.q) || misaligned(p.k) || misaligned(p.v) || misaligned(p.out) || misaligned(c.kPages) ||
      misaligned(c.vPages))
    throw Error("prefillAttention: q, k, v, out and the page pool must be 16-byte aligned");

  PagedPrefillArgs a{};
  a.q = static_cast<const uint16_t*>(p.q);
  a.k = static_cast<const uint16_t*>(p.k);
  a.v = static_cast<const uint16_t*>(p.v);
  a.out = static_cast<uint16_t*>(p.out);
  a.lse = p.lse;
  a.ratio = wantRatio ? p.lazyRatio : nullptr;
  a.nq = p.nq;
  a.nk = p.nk;
  a.hq = p.hq;
  a.group = p.hq / p.hkv;
  a.numQTiles = (p.nq + kBlockM - 1) / kBlockM;
  a.headGroup = headGroupFor(a.numQTiles, p.hq, a.group, long(dev.sms) * (wgmma ? kSm90BlocksPerSm : 2));
  a.qStride = int64_t(p.hq) * p.d;
  a.kvStride = int64_t(p.hkv) * p.d;
  a.scaleLog2 = p.scale * 1.4426950408889634f;
  a.stream = p.mask.enabled ? 1 : 0;
  // Clamping to nk keeps `pos - j < window` and the tile arithmetic in int range without
  // changing which keys are visible (pos - j < nk always holds).
  a.sink = p.mask.enabled ? (p.mask.sink < p.nk ? p.mask.sink : p.nk) : 0;
  a.window = p.mask.enabled ? (p.mask.window < p.nk ? p.mask.window : p.nk) : 0;
  a.ratioRows = ratioRows;
  a.cachedLen = cachedLen;
  if (cachedLen > 0) {
    a.kPages = static_cast<const uint16_t*>(c.kPages);
    a.vPages = static_cast<const uint16_t*>(c.vPages);
    a.pageTable = c.pageTable;
    a.pageSize = c.pageSize;
    a.pageShift = (c.pageSize & (c.pageSize - 1)) == 0 ? __builtin_ctz(unsigned(c.pageSize)) : -1;
    if (c.ring) {
      a.ringSink = c.ringSink;
      a.ringWindow = c.ringWindow;
      // Past the sinks a ring holds only its last ringWindow positions.
      a.ringTailBegin = cachedLen - c.ringWindow > c.ringSink ? cachedLen - c.ringWindow : c.ringSink;
    }
  }
  if (wantRatio) {
    a.rSink = p.ratio.sink < p.nk ? p.ratio.sink : p.nk;
    a.rRecentFrom = p.nk - (p.ratio.window < p.nk ? p.ratio.window : p.nk);
    a.ratioAtomic = ratioRows > kBlockM ? 1 : 0;
    if (a.ratioAtomic) {
      const cudaError_t e = cudaMemsetAsync(p.lazyRatio, 0, size_t(p.hq) * sizeof(float), stream);
      if (e != cudaSuccess)
        throw Error(std::string("prefillAttention: cudaMemsetAsync failed: ") + cudaGetErrorString(e));
    }
  }

  if (wgmma)
    launchPrefillSm90(a, p.dtype, p.d, stream);
  else
    dispatchPrefill(a, p.dtype, p.d, MmaSyncLaunch{stream});
}

}  // namespace lt::cuda
