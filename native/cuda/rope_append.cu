// ropeAppendKv on CUDA (params in native/core/model_params.h): one launch does what rope and
// appendKv do after three separate q, k, v projections, reading the stacked projection's rows
// once. A decode step thereby needs one GEMM and one small kernel for its attention input
// instead of three GEMMs, a rope and an append.
//
// ropeAppendKvKernel<T, kVec>: grid (tokens, CTAs per token), block 128. A token's work is rotating
//   its hq query heads into q and its hkv key heads straight into pool row slots[t], and copying its
//   value heads there. While the tokens fill the device twice over (a long prefill chunk) each has
//   one CTA; fewer, as in a decode step, share theirs over several CTAs each (ctasPerToken). Every
//   CTA forms its token's d/2 angles as float(position) · invFreq[i] rounded in f32 and takes cos/sin
//   of them in double — as ropeKernel in layer_ops.cu does, so both paths rotate by the same f32
//   cos/sin. For 16-bit types with d/2 % 8 == 0 and 16-byte aligned rows a unit is 8 rotation pairs
//   (or 8 values) moved with 16-byte loads and stores, a thread's first unit loaded before the angles
//   are made; otherwise a unit is one element.
//   A slot of -1 (or outside the pool, which the addon rejects) writes no K/V.
//   On sm_90 it is a programmatic dependent of the kernel before it (in a decode step, the q|k|v
//   projection) and lets the kernel after it (decode attention) launch at once; it reads
//   nothing before its own wait.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_kernels.h"
#include "model_common.cuh"
#include "programmatic_launch.cuh"
#include "rope_angles.cuh"

namespace lt::cuda {
namespace {

constexpr int kBlock = 128;

// A token's work units: the rotary pairs of its query heads and, when its K/V are stored, of its
// key heads, then its value elements; a unit is 8 of them with 16-byte accesses, else 1.
__host__ __device__ inline int tokenUnits(int hq, int hkv, int d, bool vec, bool store) {
  const int per = vec ? 8 : 1;
  return (hq + (store ? hkv : 0)) * (d / 2 / per) + (store ? hkv * d / per : 0);
}

template <typename T, bool kVec>
__global__ void __launch_bounds__(kBlock)
    ropeAppendKvKernel(const T* __restrict__ qkv, T* __restrict__ q, T* kPages, T* vPages,
                       const int32_t* __restrict__ positions, const int32_t* __restrict__ slots,
                       const float* __restrict__ invFreq, int hq, int hkv, int d, long long poolSlots) {
  extern __shared__ float cs[];  // cos [d/2], then sin [d/2]
  // A dependent may launch now: it waits for this grid before it reads anything this writes.
  allowDependentGrids();
  waitForPrerequisiteGrids();
  const int t = blockIdx.x, half = d >> 1;
  // positions and slots come from the host today, but are read past L1 like qkv so that this
  // stays right if a kernel ahead ever writes them (programmatic_launch.cuh).
  const float pos = float(__ldcg(positions + t));
  const long long slot = __ldcg(slots + t);
  const bool store = slot >= 0 && slot < poolSlots;
  const T* row = qkv + size_t(t) * (hq + 2 * hkv) * d;
  const size_t poolRow = store ? size_t(slot) * hkv * d : 0;
  // Rotated heads: 0 .. hq-1 go to q, hq .. hq+hkv-1 to the K pool.
  const int heads = hq + (store ? hkv : 0);
  auto target = [&](int h) { return h < hq ? q + (size_t(t) * hq + h) * d : kPages + poolRow + size_t(h - hq) * d; };
  // The token's work units (rotations, then copies of the value heads) are shared by the
  // gridDim.y CTAs of the token, each of which makes the whole cos/sin table.
  const int first = blockIdx.y * blockDim.x + threadIdx.x, stride = gridDim.y * blockDim.x;
  if constexpr (kVec) {
    const int vecs = half >> 3, rotations = heads * vecs, units = tokenUnits(hq, hkv, d, true, store);
    const uint4* vSrc = reinterpret_cast<const uint4*>(row + size_t(hq + hkv) * d);
    uint4* vDst = reinterpret_cast<uint4*>(vPages + poolRow);
    float a[8], b[8];
    uint4 value = make_uint4(0u, 0u, 0u, 0u);
    // Past L1: the kernel ahead writes qkv and may still run (programmatic_launch.cuh).
    auto load = [&](int u) {
      if (u < rotations) {
        const int h = u / vecs, c = (u - h * vecs) * 8;
        load8<true>(row + size_t(h) * d + c, a);
        load8<true>(row + size_t(h) * d + half + c, b);
      } else if (u < units) {
        value = __ldcg(vSrc + (u - rotations));
      }
    };
    // A thread's first unit is on its way while the angles are made.
    load(first);
    ropeCosSin(cs, pos, invFreq, half);
    __syncthreads();
    for (int u = first; u < units; u += stride) {
      if (u < rotations) {
        const int h = u / vecs, c = (u - h * vecs) * 8;
        ropeRotate8(a, b, cs, c, half);
        T* dst = target(h);
        store8(dst + c, a);
        store8(dst + half + c, b);
      } else {
        vDst[u - rotations] = value;
      }
      load(u + stride);
    }
  } else {
    const int rotations = heads * half, units = tokenUnits(hq, hkv, d, false, store);
    const T* vSrc = row + size_t(hq + hkv) * d;
    ropeCosSin(cs, pos, invFreq, half);
    __syncthreads();
    for (int u = first; u < units; u += stride) {
      if (u < rotations) {
        const int h = u / half, i = u - h * half;
        const T* src = row + size_t(h) * d;
        float a = toF(__ldcg(src + i)), b = toF(__ldcg(src + i + half));
        ropeTurn(a, b, cs[i], cs[half + i]);
        T* dst = target(h);
        dst[i] = fromF<T>(a);
        dst[i + half] = fromF<T>(b);
      } else {
        vPages[poolRow + (u - rotations)] = __ldcg(vSrc + (u - rotations));
      }
    }
  }
}

// CTAs per token: as many as give the grid about two CTAs per SM, but no more than leave each
// thread one unit of work; so one while the tokens alone fill the device twice over (a long
// prefill chunk), and for a decode step's few tokens enough that its rotations are not one
// CTA's serial loop on one SM.
int ctasPerToken(long long tokens, int units) {
  int dev = 0;
  const cudaError_t err = cudaGetDevice(&dev);
  if (err != cudaSuccess) throw Error(std::string("ropeAppendKv: cudaGetDevice failed: ") + cudaGetErrorString(err));
  const long long wanted = (2LL * std::max(multiprocessors(dev), 1) + tokens - 1) / tokens;
  return int(std::max<long long>(1, std::min<long long>(wanted, (units + kBlock - 1) / kBlock)));
}

template <typename T>
void launch(const RopeAppendKvParams& p, cudaStream_t stream) {
  const size_t smem = size_t(p.d) * sizeof(float);
  const long long poolSlots = (long long)p.numPages * p.pageSize;
  auto run = [&](auto kernel, int units) {
    const dim3 grid(unsigned(p.tokens), unsigned(ctasPerToken(p.tokens, units)));
    launchProgrammatic("ropeAppendKv", "ropeAppendKvKernel", kernel, grid, dim3(kBlock), smem, stream,
                       static_cast<const T*>(p.qkv), static_cast<T*>(p.q), static_cast<T*>(p.kPages),
                       static_cast<T*>(p.vPages), p.positions, p.slots, p.invFreq, p.hq, p.hkv, p.d, poolSlots);
  };
  // 16-byte accesses: 16-bit types only (8 elements), and every row start is then 16-byte
  // aligned when d/2 is a multiple of 8 and the bases are.
  bool vec = false;
  if constexpr (sizeof(T) == 2) vec = (p.d / 2) % 8 == 0 && aligned16({p.qkv, p.q, p.kPages, p.vPages});
  if (vec) {
    if constexpr (sizeof(T) == 2) run(ropeAppendKvKernel<T, true>, tokenUnits(p.hq, p.hkv, p.d, true, true));
  } else {
    run(ropeAppendKvKernel<T, false>, tokenUnits(p.hq, p.hkv, p.d, false, true));
  }
}

}  // namespace

void ropeAppendKv(const RopeAppendKvParams& p, cudaStream_t stream) {
  if (p.tokens <= 0) return;
  if (p.d <= 0 || p.d % 2 != 0)
    throw Error("ropeAppendKv: head dim must be even and positive, got " + std::to_string(p.d));
  switch (p.dtype) {
    case DType::F32:
      launch<float>(p, stream);
      return;
    case DType::F16:
      launch<f16>(p, stream);
      return;
    case DType::BF16:
      launch<bf16>(p, stream);
      return;
    default:
      throw Error(std::string("ropeAppendKv: dtype must be f32, f16 or bf16, not ") + dtypeName(p.dtype));
  }
}

}  // namespace lt::cuda
