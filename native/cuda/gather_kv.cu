// gatherKv: copies pool slots slots[0..length) of a paged K/V pool into contiguous
// k, v [length, hkv, d] (slot s is row s of the pool: page * pageSize + offset).
// Launch: one block per token, each thread moving 16-byte words of that token's K and V rows;
// rows are hkv · d · elementSize bytes, a multiple of 16 for the head dims the model uses
// (2-byte words cover any other size).
#include <cuda_runtime.h>

#include <string>

#include "core/error.h"
#include "cuda_kernels.h"

namespace lt::cuda {
namespace {

template <typename Word>
__global__ void gatherRows(const Word* __restrict__ kPages, const Word* __restrict__ vPages,
                           const int32_t* __restrict__ slots, Word* __restrict__ k, Word* __restrict__ v,
                           int32_t wordsPerRow) {
  const int32_t t = blockIdx.x;
  const size_t src = size_t(slots[t]) * wordsPerRow;
  const size_t dst = size_t(t) * wordsPerRow;
  for (int32_t i = threadIdx.x; i < wordsPerRow; i += blockDim.x) {
    k[dst + i] = kPages[src + i];
    v[dst + i] = vPages[src + i];
  }
}

}  // namespace

void gatherKv(const GatherKvParams& p, cudaStream_t stream) {
  if (p.length == 0) return;
  const size_t rowBytes = size_t(p.hkv) * p.d * dtypeSize(p.dtype);
  if (rowBytes % 16 == 0) {
    gatherRows<<<p.length, 128, 0, stream>>>(static_cast<const uint4*>(p.kPages), static_cast<const uint4*>(p.vPages),
                                             p.slots, static_cast<uint4*>(p.k), static_cast<uint4*>(p.v),
                                             int32_t(rowBytes / 16));
  } else {
    gatherRows<<<p.length, 128, 0, stream>>>(
        static_cast<const uint16_t*>(p.kPages), static_cast<const uint16_t*>(p.vPages), p.slots,
        static_cast<uint16_t*>(p.k), static_cast<uint16_t*>(p.v), int32_t(rowBytes / 2));
  }
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw Error(std::string("gatherKv launch failed: ") + cudaGetErrorString(err));
}

}  // namespace lt::cuda
