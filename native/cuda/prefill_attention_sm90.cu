/*
Prefill attention on Hopper (sm_90a): what prefill_attention.cu computes (the same formulas,
causal and streaming masks with tile skipping, LSE, fused lazy ratio, a cached prefix read
through the page table, the same block order), with both matrix products on wgmma, the
warpgroup-wide asynchronous tensor-core instructions of sm_90a.

Launch: 1-D grid of hq * ceil(nq / 128) blocks, 384 threads (three warpgroups), 225 KiB (d=128) /
113 KiB (d=64) of dynamic shared memory, one block per SM.
- A block owns 128 query rows of one head, tiles aligned to the end of the query range as in
  the mma.sync kernel; computing warpgroup w (0 or 1) owns rows [64w, 64w + 64).
- The third warpgroup is the producer: it fills three stages with K/V tiles of 128 keys and
  does nothing else, so the computing warpgroups wait only for a stage to be full; setmaxnreg
  hands most of the producer's registers to them. A call without a cached prefix has its Q, K
  and V described as tensor maps (built on the host per call): one producer thread asks the
  bulk tensor copy engine (TMA) for each tile, Q included, the copies writing the swizzled
  layout below themselves and completing on the mbarriers. A call with a cached prefix reads
  its rows through the page table: the whole producer warpgroup copies them with cp.async and
  the computing warpgroups copy their Q tile. (Whole-tile boxes measured faster than the
  producer's cp.async, one box per 16-token page slower; bench/README.md, "K/V and Q through
  the copy engine".)
  Stages change hands on mbarriers: a stage is "full" once the producer's copies into it have
  landed and "empty" once both computing warpgroups are done multiplying it. The two never
  meet inside the main loop and drift apart by up to two tiles, one running its softmax while
  the other's products keep the tensor cores busy. (Making them take turns on named barriers,
  FlashAttention-3's ping-pong, measured no faster on top of this; bench/README.md.)
- Every tile is stored as column blocks of 64 elements with the 128-byte swizzle
  (prefill_tiles.cuh chunkOffset), the layout wgmma reads through a shared-memory descriptor.
- S = Q K^T, 64 x 128 per warpgroup: d/16 wgmma m64n128k16 with Q and K both from shared memory
  (K-major). Online softmax on the accumulators in registers, base 2, as in the mma.sync kernel.
- O += P V: the S accumulators of key columns [16t, 16t + 16) are exactly the register A
  fragment of k-step t, so P never leaves registers; V is read from shared memory as an MN-major
  (transposed) operand: 8 wgmma m64n{d}k16 per tile.
- Inside a warpgroup, S of tile j is issued with P V of tile j-1 right behind it, and the
  softmax of tile j runs while the tensor cores finish P V: three K/V stages, since a tile's V
  is read one visit after its K. Both warpgroups visit every tile of the block's range.
- Streaming: a block whose window starts past the first tile needs only the sink keys of it.
  With the copy engine it visits them alone first, as a tile of kSinkRows keys (m64n16 products
  for S, one k-step of P V), instead of a whole 128-key tile.
- The epilogue stages O through the warpgroup's own Q rows so the global stores are 16-byte and
  row-contiguous.
*/
#include <cuda.h>
#include <cudaTypedefs.h>

#include <atomic>

#include "cuda/prefill_kernel_args.cuh"

#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
#error "prefill_attention_sm90.cu uses wgmma: build it for sm_90a only (-gencode arch=compute_90a,code=sm_90a)"
#endif

namespace lt::cuda::detail {
namespace {

constexpr int kWgThreads = 256;  // the two computing warpgroups
constexpr int kWgWarps = kWgThreads / 32;
constexpr int kProducerThreads = 128;  // a third warpgroup loads every K/V tile
constexpr int kBlockThreads = kWgThreads + kProducerThreads;
// One block per SM leaves each thread 168 registers at launch; the producer gives most of its
// share to the two computing warpgroups (setmaxnreg): 40 + 2 * 232 = 3 * 168.
constexpr int kLaunchRegisters = 65536 / kBlockThreads / 8 * 8;
constexpr int kProducerRegisters = 40;
constexpr int kConsumerRegisters = 232;
static_assert(kProducerThreads * kProducerRegisters + kWgThreads * kConsumerRegisters <=
                      kBlockThreads * kLaunchRegisters &&
                  kProducerRegisters % 8 == 0 && kConsumerRegisters % 8 == 0,
              "setmaxnreg.inc would wait forever for registers the producer did not give up");
// Named barrier of the computing warpgroups' epilogue (0 is __syncthreads, which the producer,
// gone by then, would never reach).
constexpr int kEpilogueBarrier = 1;
constexpr int kWgRows = 64;     // query rows per warpgroup
constexpr int kWgBlockN = 128;  // keys per K/V tile
constexpr int kStages = 3;      // K/V tiles resident at once (see the main loop)
// A streaming block whose window starts past the first tile sees only the sink keys of it: with
// the copy engine it visits those alone, as a tile of kSinkRows keys (m64n16 products).
constexpr int kSinkRows = 16;

// A wgmma shared-memory matrix descriptor with the 128-byte swizzle: start address, the byte
// distance between 64-column blocks (leadBytes; used by MN-major operands wider than a block)
// and between groups of 8 rows (strideBytes). Adding n >> 4 moves the start by n bytes.
__device__ __forceinline__ uint64_t smemDescriptor(uint32_t addr, uint32_t leadBytes, uint32_t strideBytes) {
  return uint64_t((addr & 0x3FFFFu) >> 4) | (uint64_t((leadBytes >> 4) & 0x3FFFu) << 16) |
         (uint64_t((strideBytes >> 4) & 0x3FFFu) << 32) | (uint64_t(1) << 62);
}

__device__ __forceinline__ void wgmmaFence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmmaCommit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void wgmmaWait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Shared memory written through the generic proxy (cp.async) and read next by wgmma (the async
// proxy): each reading thread fences after the mbarrier wait that made the writes visible to it.
__device__ __forceinline__ void fenceProxyAsync() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
// mbarriers: K/V stages handed from the producer to the computing warpgroups and back, and the Q tile.
__device__ __forceinline__ void mbarInit(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbarWait(uint32_t bar, int parity) {
  uint32_t done = 0;
  while (!done)
    asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                 : "=r"(done)
                 : "r"(bar), "r"(parity)
                 : "memory");
}
__device__ __forceinline__ void mbarArrive(uint32_t bar) {
  asm volatile("{\n.reg .b64 state;\nmbarrier.arrive.shared::cta.b64 state, [%0];\n}\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void cpAsyncWaitAll() {
  asm volatile("cp.async.wait_all;\n" ::: "memory");
}
// Arrives on `bar` once every cp.async this thread issued so far has landed.
__device__ __forceinline__ void cpAsyncArrive(uint32_t bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}

// The Q, K and V of a call without a cached prefix, described for the bulk tensor copy engine
// (TMA): dims (d, head, token), one box = 64 columns of one head over 128 tokens, which lands as
// one 128-byte-swizzled column block of a tile (chunkOffset); tokens outside [0, n) as zeros.
// kSink/vSink: the same K and V in boxes of kSinkRows tokens, for the streaming mask's sink keys.
struct TileTensorMaps {
  CUtensorMap q, k, v, kSink, vSink;
};
static_assert(kBlockM == 128 && kWgBlockN == 128, "a box is the 128 rows of a Q or K/V tile");
// Arrives on `bar` (the one arrival it counts) and tells it `bytes` more are on their way.
__device__ __forceinline__ void mbarArriveExpectTx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
// One box of `map` at (c0, c1, c2) into shared memory at dst, completing its bytes on `bar`.
__device__ __forceinline__ void tmaLoad3d(uint32_t dst, const CUtensorMap* map, uint32_t bar, int c0, int c1, int c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n" ::
          "r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
      : "memory");
}

// Accumulators are asm outputs the moment a wgmma is issued, though the tensor cores write them
// until the wait: this ties every later use to a point after the wait.
// The same for a register A operand, which the tensor cores read until the wait: without it the
// compiler may reuse those registers as soon as the wgmma is issued.
template <int N>
__device__ __forceinline__ void pinAfterWait(float (&d)[N][4]) {
#pragma unroll
  for (int j = 0; j < N; j++)
#pragma unroll
    for (int e = 0; e < 4; e++) asm volatile("" : "+f"(d[j][e])::"memory");
}
template <int N>
__device__ __forceinline__ void pinAfterWait(uint32_t (&r)[N][4]) {
#pragma unroll
  for (int j = 0; j < N; j++)
#pragma unroll
    for (int e = 0; e < 4; e++) asm volatile("" : "+r"(r[j][e])::"memory");
}

template <typename T>
struct Wgmma;

// The three wgmma shapes the kernel issues, for one input type (TYPE: "bf16" or "f16").
#define LT_WGMMA_OPS(TYPE)                                                                                           \
  /* d (+)= A B: A [64 x 16] and B [16 x 128] from shared memory, both K-major. */                                   \
  static __device__ __forceinline__ void ss128(float(&d)[16][4], uint64_t descA, uint64_t descB, int accumulate) {   \
    asm volatile(                                                                                                    \
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                                                 \
        "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE                                                 \
        " "                                                                                                          \
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, " \
        "%23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, "  \
        "%44, "                                                                                                      \
        "%45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "           \
        "%64, %65, p, 1, 1, 0, 0;\n}\n"                                                                              \
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),   \
          "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]),   \
          "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]),   \
          "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),   \
          "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]),   \
          "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), "+f"(d[10][0]), "+f"(d[10][1]), \
          "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]),            \
          "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]),            \
          "+f"(d[13][2]), "+f"(d[13][3]), "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]),            \
          "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])                                             \
        : "l"(descA), "l"(descB), "r"(accumulate));                                                                  \
  }                                                                                                                  \
  /* d (+)= A B: A [64 x 16] and B [16 x 16] from shared memory, both K-major (the sink keys' tile). */              \
  static __device__ __forceinline__ void ss16(float(&d)[2][4], uint64_t descA, uint64_t descB, int accumulate) {     \
    asm volatile(                                                                                                    \
        "{\n.reg .pred p;\nsetp.ne.b32 p, %10, 0;\n"                                                                 \
        "wgmma.mma_async.sync.aligned.m64n16k16.f32." TYPE "." TYPE                                                  \
        " {%0, %1, %2, %3, %4, %5, %6, %7}, %8, %9, p, 1, 1, 0, 0;\n}\n"                                             \
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),   \
          "+f"(d[1][3])                                                                                              \
        : "l"(descA), "l"(descB), "r"(accumulate));                                                                  \
  }                                                                                                                  \
  /* d += A B: A [64 x 16] from registers, B [16 x 128] from shared memory, MN-major. */                             \
  static __device__ __forceinline__ void rs128(float(&d)[16][4], const uint32_t(&a)[4], uint64_t descB) {            \
    asm volatile(                                                                                                    \
        "{\n.reg .pred p;\nsetp.eq.u32 p, 1, 1;\n"                                                                   \
        "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE                                                 \
        " "                                                                                                          \
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, " \
        "%23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, "  \
        "%44, "                                                                                                      \
        "%45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "           \
        "{%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"                                                                \
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),   \
          "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]),   \
          "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]),   \
          "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),   \
          "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]),   \
          "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), "+f"(d[10][0]), "+f"(d[10][1]), \
          "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]),            \
          "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]),            \
          "+f"(d[13][2]), "+f"(d[13][3]), "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]),            \
          "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])                                             \
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(descB));                                                   \
  }                                                                                                                  \
  /* d += A B: A [64 x 16] from registers, B [16 x 64] from shared memory, MN-major. */                              \
  static __device__ __forceinline__ void rs64(float(&d)[8][4], const uint32_t(&a)[4], uint64_t descB) {              \
    asm volatile(                                                                                                    \
        "{\n.reg .pred p;\nsetp.eq.u32 p, 1, 1;\n"                                                                   \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE                                                  \
        " "                                                                                                          \
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, " \
        "%23, %24, %25, %26, %27, %28, %29, %30, %31}, "                                                             \
        "{%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"                                                                \
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),   \
          "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]),   \
          "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]),   \
          "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),   \
          "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])                                                 \
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(descB));                                                   \
  }

template <>
struct Wgmma<__nv_bfloat16> {
  LT_WGMMA_OPS("bf16")
};
template <>
struct Wgmma<__half> {
  LT_WGMMA_OPS("f16")
};
#undef LT_WGMMA_OPS

template <typename T, int D>
__device__ __forceinline__ void wgmmaPV(float (&o)[D / 8][4], const uint32_t (&p)[4], uint64_t descV) {
  if constexpr (D == 128)
    Wgmma<T>::rs128(o, p, descV);
  else
    Wgmma<T>::rs64(o, p, descV);
}

// The descriptor offset of k-step kk (16 elements of d) of a K-major tile stored as 64-column
// blocks of blockBytes each: four k-steps of 32 bytes to a block.
__device__ __forceinline__ uint64_t kStepOffset(int kk, uint32_t blockBytes) {
  return ((kk >> 2) * blockBytes + (kk & 3) * 32) >> 4;
}

// Probabilities as the register A fragments of P V: the S accumulators of key columns
// [16t, 16t + 16) are k-step t.
template <typename T, int kNT>
__device__ __forceinline__ void packProbabilities(const float (&s)[kNT][4], uint32_t (&p)[kNT / 2][4]) {
#pragma unroll
  for (int kk = 0; kk < kNT / 2; kk++) {
    p[kk][0] = Mma<T>::pack(s[2 * kk][0], s[2 * kk][1]);
    p[kk][1] = Mma<T>::pack(s[2 * kk][2], s[2 * kk][3]);
    p[kk][2] = Mma<T>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
    p[kk][3] = Mma<T>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
  }
}

constexpr float kMaxSlackLog2 = 8.f;

// The online softmax of one S tile of a warpgroup (see the mma.sync kernel): masks what this
// thread's rows (positions pos0 and pos0 + 8) may not see unless the whole tile is visible,
// turns s into probabilities against the updated running max, and returns in alpha the
// factor by which the rows' earlier sums and outputs shrink.
template <int kNT>
__device__ __forceinline__ void softmaxTile(float (&s)[kNT][4], float (&alpha)[2], float (&mRow)[2], float (&lRow)[2],
                                            const PrefillArgs& a, int pos0, int t0, int tq, bool allVisible) {
  if (!allVisible) {  // diagonal and window-edge tiles only
#pragma unroll
    for (int nt = 0; nt < kNT; nt++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int pos = pos0 + 8 * (e >> 1);
        const int j = t0 + 8 * nt + 2 * tq + (e & 1);
        const bool vis = j <= pos && (!a.stream || j < a.sink || pos - j < a.window);
        if (!vis) s[nt][e] = -INFINITY;
      }
  }
  // Max and sum as trees, not chains: with two warps per scheduler, a 32-deep dependent chain
  // leaves the issue slots idle.
  float mx[2];
#pragma unroll
  for (int hf = 0; hf < 2; hf++) {
    float m[kNT];
#pragma unroll
    for (int nt = 0; nt < kNT; nt++) m[nt] = fmaxf(s[nt][2 * hf], s[nt][2 * hf + 1]);
#pragma unroll
    for (int w = kNT / 2; w >= 1; w >>= 1)
#pragma unroll
      for (int i = 0; i < kNT / 2; i++)
        if (i < w) m[i] = fmaxf(m[i], m[i + w]);
    mx[hf] = m[0];
  }
#pragma unroll
  for (int hf = 0; hf < 2; hf++) mx[hf] = quadMax(mx[hf]);
#pragma unroll
  for (int hf = 0; hf < 2; hf++) {
    // The running max moves only when a tile's max passes it by more than kMaxSlackLog2, so
    // after the first tiles alpha is 1 for whole warps and O is not rescaled: a probability
    // may reach 2^kMaxSlackLog2, far from what f32 sums and bf16/f16 P can hold, with the same
    // relative rounding as below 1, and l, O and the LSE all use the same max.
    const float mTile = mx[hf] * a.scaleLog2;
    const float mNew = mTile > mRow[hf] + kMaxSlackLog2 ? mTile : mRow[hf];
    // A row with nothing visible yet keeps max -inf; subtracting 0 instead keeps
    // exp2(-inf - m) at 0 rather than NaN.
    const float mUse = mNew == -INFINITY ? 0.f : mNew;
    alpha[hf] = exp2f(mRow[hf] - mUse);
    mRow[hf] = mNew;
    float sum[kNT];
#pragma unroll
    for (int nt = 0; nt < kNT; nt++) {
      const float p0 = exp2f(fmaf(s[nt][2 * hf], a.scaleLog2, -mUse));
      const float p1 = exp2f(fmaf(s[nt][2 * hf + 1], a.scaleLog2, -mUse));
      s[nt][2 * hf] = p0;
      s[nt][2 * hf + 1] = p1;
      sum[nt] = p0 + p1;
    }
#pragma unroll
    for (int w = kNT / 2; w >= 1; w >>= 1)
#pragma unroll
      for (int i = 0; i < kNT / 2; i++)
        if (i < w) sum[i] += sum[i + w];
    // l stays a per-lane partial sum; the quad shares alpha, so the 4 partials are added once
    // at the end.
    lRow[hf] = lRow[hf] * alpha[hf] + sum[0];
  }
}

// The fused lazy ratio's running sums over Sink ∪ Recent keys, rescaled like l.
template <int kNT>
__device__ __forceinline__ void ratioTile(const float (&s)[kNT][4], const float (&alpha)[2], float (&lSub)[2],
                                          const PrefillArgs& a, int t0, int tq) {
  const bool hits = t0 < a.rSink || t0 + kNT * 8 - 1 >= a.rRecentFrom;
#pragma unroll
  for (int hf = 0; hf < 2; hf++) {
    float sub = 0.f;
    if (hits) {
#pragma unroll
      for (int nt = 0; nt < kNT; nt++)
#pragma unroll
        for (int e = 0; e < 2; e++) {
          const int j = t0 + 8 * nt + 2 * tq + e;
          if (j < a.rSink || j >= a.rRecentFrom) sub += s[nt][2 * hf + e];
        }
    }
    lSub[hf] = lSub[hf] * alpha[hf] + sub;
  }
}

// The work of one block. kRatio: this block holds Last rows and computes the lazy ratio.
template <typename T, int D, bool kRatio, KvSource kSource, bool kTma>
__device__ __forceinline__ void wgmmaBlock(const KernelArgs<kSource>& a, const TileTensorMaps& maps,
                                           unsigned char* smemRaw, float* ratioPart, uint32_t stageBars) {
  constexpr int kTileQ = kBlockM * D * 2;
  constexpr int kTileKV = kWgBlockN * D * 2;
  constexpr int kNT = kWgBlockN / 8;                // n8 column groups of S
  constexpr int kDT = D / 8;                        // n8 column groups of O
  constexpr uint32_t kQBlockBytes = kBlockM * 128;  // one 64-column block of a tile
  constexpr uint32_t kKvBlockBytes = kWgBlockN * 128;
  const uint32_t rawAddr = smemAddr(smemRaw);
  const uint32_t sQ = (rawAddr + 1023u) & ~1023u;  // the 128-byte swizzle wants 1 KiB alignment
  const uint32_t sK = sQ + kTileQ;
  const uint32_t sV = sK + kStages * kTileKV;
  unsigned char* const sQPtr = smemRaw + (sQ - rawAddr);

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int wg = warp >> 2;
  const BlockCoord bc = blockCoord(a.numQTiles, a.hq, a.headGroup);
  int h = bc.h;
  const int kvh = h / a.group;
  const int rowStart = a.nq - (a.numQTiles - bc.qt) * kBlockM;
  const int posOff = a.nk - a.nq;
  const int pMinB = posOff + max(rowStart, 0);
  const int pMaxB = posOff + rowStart + kBlockM - 1;
  const TileRange tr =
      a.stream ? makeTileRange<kWgBlockN>(pMaxB, a.sink, pMinB - a.window + 1) : makeTileRange<kWgBlockN>(pMaxB, 0, 0);
  constexpr int kSinkTileKV = kSinkRows * D * 2;
  constexpr uint32_t kSinkBlockBytes = kSinkRows * 128;
  const bool sinkVisit =
      kTma && a.stream && a.sink <= kSinkRows && tr.sinkEnd == 1 && pMinB - a.window + 1 >= kWgBlockN;

  // full(s): the producer's copies of the tile in stage s have landed; empty(s): both computing
  // warpgroups are done multiplying it. Each completes once per use of its stage. qBar: the Q
  // tile has landed (the copy engine's box, or the computing threads' copies).
  auto fullBar = [&](int st) { return stageBars + 8u * uint32_t(st); };
  auto emptyBar = [&](int st) { return stageBars + 8u * uint32_t(kStages + st); };
  const uint32_t qBar = stageBars + 8u * uint32_t(2 * kStages);
  if (tid == 0) {
    for (int st = 0; st < kStages; st++)
      mbarInit(fullBar(st), kTma ? 1 : kProducerThreads), mbarInit(emptyBar(st), kWgThreads);
    mbarInit(qBar, kTma ? 1 : kWgThreads);
  }
  __syncthreads();
  if (warp >= kWgWarps) {  // the producer: fills each stage again once both warpgroups are done with it
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kProducerRegisters));
    if constexpr (kTma) {  // one thread asks the copy engine for each tile's column blocks
      if (tid == kWgThreads) {
        mbarArriveExpectTx(qBar, kTileQ);
#pragma unroll
        for (int c = 0; c < D / 64; c++) tmaLoad3d(sQ + c * kQBlockBytes, &maps.q, qBar, 64 * c, h, rowStart);
        if (sinkVisit) {  // visit 0, into stage 0
          mbarArriveExpectTx(fullBar(0), 2 * kSinkTileKV);
#pragma unroll
          for (int c = 0; c < D / 64; c++) {
            tmaLoad3d(sK + c * kSinkBlockBytes, &maps.kSink, fullBar(0), 64 * c, kvh, 0);
            tmaLoad3d(sV + c * kSinkBlockBytes, &maps.vSink, fullBar(0), 64 * c, kvh, 0);
          }
        }
        for (int it = sinkVisit ? 1 : 0; it < tr.count; it++) {
          const int st = it % kStages, use = it / kStages;
          if (use > 0) mbarWait(emptyBar(st), (use - 1) & 1);
          mbarArriveExpectTx(fullBar(st), 2 * kTileKV);
          const int key0 = tr.tile(it) * kWgBlockN;
#pragma unroll
          for (int c = 0; c < D / 64; c++) {
            tmaLoad3d(sK + st * kTileKV + c * kKvBlockBytes, &maps.k, fullBar(st), 64 * c, kvh, key0);
            tmaLoad3d(sV + st * kTileKV + c * kKvBlockBytes, &maps.v, fullBar(st), 64 * c, kvh, key0);
          }
        }
      }
      return;
    }
    const uint16_t* gk = a.k + kvh * D;
    const uint16_t* gv = a.v + kvh * D;
    for (int it = 0; it < tr.count; it++) {
      const int st = it % kStages, use = it / kStages;
      if (use > 0) mbarWait(emptyBar(st), (use - 1) & 1);
      loadKvTile<D, kSource, kWgBlockN, kProducerThreads, true, true>(sK + st * kTileKV, sV + st * kTileKV, a, gk, gv,
                                                                      kvh, tr.tile(it), tid - kWgThreads);
      cpAsyncArrive(fullBar(st));
    }
    cpAsyncWaitAll();
    return;
  }
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kConsumerRegisters));
  if (!kTma) {
    loadTiles<D, kBlockM, false, kWgThreads, true>(sQ, 0u, a.q + h * D, nullptr, a.qStride, rowStart, a.nq, tid);
    cpAsyncArrive(qBar);
  }

  int gRow0 = rowStart + wg * kWgRows;  // the warpgroup's first row; may be negative in the first tile
  const int gpMin = posOff + max(gRow0, 0);
  const int gpMax = posOff + gRow0 + kWgRows - 1;
  const bool doRatio = kRatio && gRow0 + kWgRows - 1 >= a.nq - a.ratioRows;
  const int g = lane >> 2, tq = lane & 3;
  const int rowInGroup = 16 * (warp & 3) + g;  // this thread's rows: rowInGroup and rowInGroup + 8

  float o[kDT][4];
#pragma unroll
  for (int nt = 0; nt < kDT; nt++)
#pragma unroll
    for (int e = 0; e < 4; e++) o[nt][e] = 0.f;
  float mRow[2] = {-INFINITY, -INFINITY}, lRow[2] = {0.f, 0.f}, lSub[2] = {0.f, 0.f};

  const uint64_t qDesc = smemDescriptor(sQ + wg * kWgRows * 128, 16, 1024);

  // Software pipeline inside each warpgroup: in visit `it`, the product S = Q K^T of tile `it`
  // is issued first and O += P V of tile it-1 right behind it; the softmax of tile `it` runs
  // once S is done, while the tensor cores still work on P V. So P (the previous tile's
  // probabilities), S and O are live together, and a tile's V is read one visit after its K:
  // three stages of K/V, the producer filling the next while this one and the previous are in use.
  // Every visit issues both products in straight-line code (ptxas must see which group a wait
  // retires, or it inserts a full wait of its own), so a warpgroup also multiplies a tile none
  // of its rows can see (then fully masked: at most one such tile per warpgroup, at the diagonal
  // or at the window's edge).
  float s[kNT][4];
  uint32_t p[kWgBlockN / 16][4];
  float alpha[2];
  const int pos0 = posOff + gRow0 + rowInGroup;
  // Waits for tile `it` to have landed.
  auto beginVisit = [&](int it) {
    mbarWait(fullBar(it % kStages), (it / kStages) & 1);
    if constexpr (!kTma) fenceProxyAsync();  // the copy engine writes through the async proxy already
  };
  auto releaseStage = [&](int it) { mbarArrive(emptyBar(it % kStages)); };
  auto issueS = [&](int it) {
    const uint64_t kDesc = smemDescriptor(sK + (it % kStages) * kTileKV, 16, 1024);
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
      Wgmma<T>::ss128(s, qDesc + kStepOffset(kk, kQBlockBytes), kDesc + kStepOffset(kk, kKvBlockBytes), kk > 0);
    wgmmaCommit();
  };
  auto issuePV = [&](int it) {
    const uint64_t vDesc = smemDescriptor(sV + (it % kStages) * kTileKV, kKvBlockBytes, 1024);
#pragma unroll
    for (int kk = 0; kk < kWgBlockN / 16; kk++) wgmmaPV<T, D>(o, p[kk], vDesc + ((kk * 16 * 128) >> 4));
    wgmmaCommit();
  };
  auto softmax = [&](int it) {
    const int t0 = tr.tile(it) * kWgBlockN;
    const int t1 = t0 + kWgBlockN - 1;
    const bool allVisible = t1 <= gpMin && (!a.stream || t1 < a.sink || gpMax - t0 < a.window);
    softmaxTile(s, alpha, mRow, lRow, a, pos0, t0, tq, allVisible);
    if (doRatio) ratioTile(s, alpha, lSub, a, t0, tq);
  };
  auto rescaleO = [&]() {
#pragma unroll
    for (int nt = 0; nt < kDT; nt++) {
      o[nt][0] *= alpha[0];
      o[nt][1] *= alpha[0];
      o[nt][2] *= alpha[1];
      o[nt][3] *= alpha[1];
    }
  };

  if (tr.count > 0) {
    mbarWait(qBar, 0);
    int first = 0;    // the first visit of the pipeline below
    if (sinkVisit) {  // the sink keys alone, before the window's tiles; nothing of it overlaps
      float sSink[2][4] = {};
      uint32_t pSink[1][4];
      beginVisit(0);
      wgmmaFence();
      const uint64_t kDesc = smemDescriptor(sK, 16, 1024);
#pragma unroll
      for (int kk = 0; kk < D / 16; kk++)
        Wgmma<T>::ss16(sSink, qDesc + kStepOffset(kk, kQBlockBytes), kDesc + kStepOffset(kk, kSinkBlockBytes), kk > 0);
      wgmmaCommit();
      wgmmaWait<0>();
      pinAfterWait(sSink);
      softmaxTile(sSink, alpha, mRow, lRow, a, pos0, 0, tq, false);
      if (doRatio) ratioTile(sSink, alpha, lSub, a, 0, tq);
      packProbabilities<T>(sSink, pSink);
      wgmmaFence();
      wgmmaPV<T, D>(o, pSink[0], smemDescriptor(sV, kSinkBlockBytes, 1024));
      wgmmaCommit();
      wgmmaWait<0>();
      pinAfterWait(o);
      pinAfterWait(pSink);
      releaseStage(0);
      first = 1;
    }
    beginVisit(first);
    wgmmaFence();
    issueS(first);
    wgmmaWait<0>();
    pinAfterWait(s);
    softmax(first);
    if (first > 0) rescaleO();  // O holds the sink keys' share
    packProbabilities<T>(s, p);
    for (int it = first + 1; it < tr.count; it++) {
      beginVisit(it);
      wgmmaFence();
      issueS(it);
      issuePV(it - 1);
      wgmmaWait<1>();
      pinAfterWait(s);
      softmax(it);
      wgmmaWait<0>();
      pinAfterWait(o);
      pinAfterWait(p);
      releaseStage(it - 1);
      // Once the running max settles (most tiles) alpha is 1 for the whole warp.
      if (__any_sync(kAllLanes, alpha[0] != 1.f || alpha[1] != 1.f)) rescaleO();
      packProbabilities<T>(s, p);
    }
    wgmmaFence();
    issuePV(tr.count - 1);
    wgmmaWait<0>();
    pinAfterWait(o);
    pinAfterWait(p);
  }

  // ---- epilogue ----
  // The Q rows staged into below were copied by threads of both warpgroups: with tiles, their
  // copies landed before the first product; with none, they are waited for here.
  if (tr.count == 0) mbarWait(qBar, 0);
  {
    const BlockCoord again = blockCoordAgain(a.numQTiles, a.hq, a.headGroup);
    h = again.h;
    gRow0 = a.nq - (a.numQTiles - again.qt) * kBlockM + wg * kWgRows;
  }
  float lTot[2];
#pragma unroll
  for (int hf = 0; hf < 2; hf++) lTot[hf] = quadSum(lRow[hf]);
#pragma unroll
  for (int hf = 0; hf < 2; hf++) {
    const float inv = lTot[hf] > 0.f ? 1.f / lTot[hf] : 0.f;  // empty row -> zeros
    const int r = wg * kWgRows + rowInGroup + 8 * hf;
#pragma unroll
    for (int nt = 0; nt < kDT; nt++)
      *reinterpret_cast<uint32_t*>(sQPtr + chunkOffset<D, kBlockM, true>(r, nt) + tq * 4) =
          Mma<T>::pack(o[nt][2 * hf] * inv, o[nt][2 * hf + 1] * inv);
    const int row = gRow0 + rowInGroup + 8 * hf;
    if (a.lse != nullptr && tq == 0 && row >= 0) {
      const float l = lTot[hf];
      a.lse[int64_t(row) * a.hq + h] = l > 0.f ? (mRow[hf] + __log2f(l)) * 0.69314718055994531f : -INFINITY;
    }
  }
  namedBarrierSync<kEpilogueBarrier, kWgThreads>();
  {
    constexpr int kChunks = D / 8;
    constexpr int kRowsPerPass = 128 / kChunks;
    const int gt = tid & 127, ch = gt % kChunks;
#pragma unroll
    for (int i = 0; i < kWgRows / kRowsPerPass; i++) {
      const int rl = gt / kChunks + i * kRowsPerPass;
      const int row = gRow0 + rl;
      if (row >= 0) {
        const uint4 val = *reinterpret_cast<const uint4*>(sQPtr + chunkOffset<D, kBlockM, true>(wg * kWgRows + rl, ch));
        *reinterpret_cast<uint4*>(a.out + int64_t(row) * a.qStride + h * D + ch * 8) = val;
      }
    }
  }

  if (kRatio) {
    float part = 0.f;
    if (doRatio) {
#pragma unroll
      for (int hf = 0; hf < 2; hf++)
        addLastRowShare(part, lSub[hf], lTot[hf], gRow0 + rowInGroup + 8 * hf, a.nq - a.ratioRows, tq);
      part = warpSum(part);
    }
    writeRatio<kWgWarps, kEpilogueBarrier>(part, ratioPart, a.ratio, h, a.ratioRows, a.ratioAtomic, tid);
  }
}

// One kernel for plain and fused calls, as in prefill_attention.cu: only the blocks holding
// Last rows take the ratio path.
template <typename T, int D, KvSource kSource, bool kTma>
__global__ void __launch_bounds__(kBlockThreads, 1)
    prefillWgmmaKernel(const KernelArgs<kSource> a, const __grid_constant__ TileTensorMaps maps) {
  extern __shared__ __align__(16) unsigned char smemRaw[];  // aligned by hand in wgmmaBlock
  __shared__ float ratioPart[kWgWarps];
  __shared__ uint64_t stageBars[2 * kStages + 1];
  const uint32_t bars = smemAddr(stageBars);
  if (a.ratioRows > 0) {
    const int qt = blockCoord(a.numQTiles, a.hq, a.headGroup).qt;
    const int rowEnd = a.nq - (a.numQTiles - 1 - qt) * kBlockM;  // one past the block's last row
    if (rowEnd > a.nq - a.ratioRows) {
      wgmmaBlock<T, D, true, kSource, kTma>(a, maps, smemRaw, ratioPart, bars);
      return;
    }
  }
  wgmmaBlock<T, D, false, kSource, kTma>(a, maps, smemRaw, ratioPart, bars);
}

// The driver's tensor-map encoder, looked up once through the runtime (the addon does not link
// the driver library); null where the driver lacks it.
PFN_cuTensorMapEncodeTiled_v12000 tensorMapEncoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found) !=
            cudaSuccess ||
        found != cudaDriverEntryPointSuccess)
      fn = nullptr;
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  return encode;
}

// Describes a contiguous call's q, k and v for the copy engine; false where the driver cannot
// (no encoder), and the kernel copies with cp.async instead. What the encoder requires the
// launch has checked already: nq >= 1, 16-byte aligned tensors, token strides of hq·d or hkv·d
// elements with d 64 or 128.
template <int D>
bool encodeTileTensorMaps(const PrefillArgs& a, TileTensorMaps& maps) {
  const PFN_cuTensorMapEncodeTiled_v12000 encode = tensorMapEncoder();
  if (encode == nullptr) return false;
  auto describe = [&](CUtensorMap& map, const uint16_t* base, int heads, int tokens, int64_t tokenStride,
                      int boxTokens) {
    const cuuint64_t dims[3] = {cuuint64_t(D), cuuint64_t(heads), cuuint64_t(tokens)};
    const cuuint64_t strides[2] = {cuuint64_t(D) * 2, cuuint64_t(tokenStride) * 2};  // bytes, of dims 1 and 2
    const cuuint32_t box[3] = {64, 1, cuuint32_t(boxTokens)};
    const cuuint32_t unitSteps[3] = {1, 1, 1};
    return encode(&map, CU_TENSOR_MAP_DATA_TYPE_UINT16, 3, const_cast<uint16_t*>(base), dims, strides, box, unitSteps,
                  CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                  CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
  };
  const int kvHeads = a.hq / a.group;
  return describe(maps.q, a.q, a.hq, a.nq, a.qStride, kBlockM) &&
         describe(maps.k, a.k, kvHeads, a.nk, a.kvStride, kWgBlockN) &&
         describe(maps.v, a.v, kvHeads, a.nk, a.kvStride, kWgBlockN) &&
         describe(maps.kSink, a.k, kvHeads, a.nk, a.kvStride, kSinkRows) &&
         describe(maps.vSink, a.v, kvHeads, a.nk, a.kvStride, kSinkRows);
}

struct WgmmaLaunch {
  cudaStream_t stream;
  template <typename T, int D, KvSource kSource>
  void run(const KernelArgs<kSource>& a) const {
    constexpr int kSmemBytes = kBlockM * D * 2 + 2 * kStages * kWgBlockN * D * 2 + 1024;
    TileTensorMaps maps{};
    if constexpr (kSource == KvSource::Contiguous) {
      if (encodeTileTensorMaps<D>(a, maps)) {
        static std::atomic<uint64_t> ready{0};
        launchPrefillKernel(prefillWgmmaKernel<T, D, kSource, true>, kBlockThreads, kSmemBytes, ready, a, stream, maps);
        return;
      }
    }
    static std::atomic<uint64_t> ready{0};
    launchPrefillKernel(prefillWgmmaKernel<T, D, kSource, false>, kBlockThreads, kSmemBytes, ready, a, stream, maps);
  }
};

}  // namespace

void launchPrefillSm90(const PagedPrefillArgs& a, DType dtype, int d, cudaStream_t stream) {
  dispatchPrefill(a, dtype, d, WgmmaLaunch{stream});
}

}  // namespace lt::cuda::detail
