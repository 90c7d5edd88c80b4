// Page-pool cache operations on [numPages, pageSize, hkv, d] pools (K and V alike). Rows are
// byte copies, so every float dtype works; slot s of the pool is row s (page * pageSize + offset).
//
// appendKvKernel<V>: token t's [hkv, d] row of k and v goes to pool row slots[t].
//   grid min(ceil(tokens * rowVecs / 256), 8192), block 256, grid-stride over (token, vector).
// cutGatherKernel<V> then cutScatterKernel<V>: turn a full cache of `length` tokens into the
//   streaming ring of DESIGN.md section 2. The kept tokens (sinks p < sink, and the last
//   `window`, p >= max(sink, length - window)) are first gathered, in position order, into a
//   scratch buffer, then scattered to ring slot p (p < sink) or sink + (p - sink) mod window of
//   dstPageTable. Two launches on one stream: the destination pages may be the source pages, so
//   no row may be written before every row has been read.
//   Each: grid min(ceil(kept * rowVecs / 256), 8192), block 256, grid-stride.
// V is uint4 when rows and pointers allow 16-byte copies (always, for the shapes decode takes),
// else a narrower type.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "cuda/cuda_kernels.h"

namespace lt::cuda {
namespace {

constexpr int kBlock = 256;
constexpr long long kMaxGrid = 8192;

template <typename V>
__global__ void __launch_bounds__(kBlock)
    appendKvKernel(const V* __restrict__ k, const V* __restrict__ v, V* kPages, V* vPages,
                   const int32_t* __restrict__ slots, long long total, int rowVecs, long long poolSlots) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    const long long t = i / rowVecs;
    const int c = int(i - t * rowVecs);
    const long long slot = slots[t];
    // The addon rejects such slots; a caller below it that passes one loses that token rather
    // than scribbling outside the pool.
    if (slot < 0 || slot >= poolSlots) continue;
    const size_t dst = size_t(slot) * rowVecs + c;
    kPages[dst] = k[i];
    vPages[dst] = v[i];
  }
}

struct CutGeometry {
  int length, sink, window, pageSize;
  int sinkKept;     // min(sink, length)
  int recentBegin;  // first kept position past the sinks
  int kept;         // min(length, sink + window)
};

__device__ __forceinline__ int keptPosition(const CutGeometry& g, int i) {
  return i < g.sinkKept ? i : g.recentBegin + (i - g.sinkKept);
}

__device__ __forceinline__ size_t poolRow(const int32_t* table, int slot, int pageSize) {
  return size_t(table[slot / pageSize]) * pageSize + slot % pageSize;
}

template <typename V>
__global__ void __launch_bounds__(kBlock)
    cutGatherKernel(const V* kPages, const V* vPages, const int32_t* __restrict__ srcTable, V* kScratch, V* vScratch,
                    CutGeometry g, int rowVecs) {
  const long long total = (long long)g.kept * rowVecs;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    const int r = int(i / rowVecs);
    const int c = int(i - (long long)r * rowVecs);
    const size_t src = poolRow(srcTable, keptPosition(g, r), g.pageSize) * rowVecs + c;
    kScratch[i] = kPages[src];
    vScratch[i] = vPages[src];
  }
}

template <typename V>
__global__ void __launch_bounds__(kBlock)
    cutScatterKernel(V* kPages, V* vPages, const int32_t* __restrict__ dstTable, const V* kScratch, const V* vScratch,
                     CutGeometry g, int rowVecs) {
  const long long total = (long long)g.kept * rowVecs;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    const int r = int(i / rowVecs);
    const int c = int(i - (long long)r * rowVecs);
    const int p = keptPosition(g, r);
    const int slot = p < g.sink ? p : g.sink + (p - g.sink) % g.window;
    const size_t dst = poolRow(dstTable, slot, g.pageSize) * rowVecs + c;
    kPages[dst] = kScratch[i];
    vPages[dst] = vScratch[i];
  }
}

void throwIfLaunchFailed(const char* op, const char* kernel) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw Error(std::string(op) + ": launch of " + kernel + " failed: " + cudaGetErrorString(err));
}

unsigned gridFor(long long work) {
  return unsigned(std::max(1LL, std::min(kMaxGrid, (work + kBlock - 1) / kBlock)));
}

// The widest copy unit that divides a row and every pointer involved.
int vectorBytes(size_t rowBytes, std::initializer_list<const void*> ptrs) {
  for (int w : {16, 8, 4, 2, 1}) {
    if (rowBytes % w) continue;
    bool ok = true;
    for (const void* p : ptrs) ok = ok && (reinterpret_cast<uintptr_t>(p) % w == 0);
    if (ok) return w;
  }
  return 1;
}

void checkCacheDType(DType t, const char* op) {
  if (!isFloatType(t)) throw Error(std::string(op) + ": the K/V pool must be f32, f16 or bf16, not " + dtypeName(t));
}

template <typename V>
void launchAppend(const AppendKvParams& p, size_t rowBytes, cudaStream_t stream) {
  const int rowVecs = int(rowBytes / sizeof(V));
  const long long total = (long long)p.tokens * rowVecs;
  appendKvKernel<V><<<gridFor(total), kBlock, 0, stream>>>(static_cast<const V*>(p.k), static_cast<const V*>(p.v),
                                                           static_cast<V*>(p.kPages), static_cast<V*>(p.vPages),
                                                           p.slots, total, rowVecs, (long long)p.numPages * p.pageSize);
  throwIfLaunchFailed("appendKv", "appendKvKernel");
}

template <typename V>
void launchCut(const CutToStreamingParams& p, const CutGeometry& g, size_t rowBytes, void* scratch,
               cudaStream_t stream) {
  const int rowVecs = int(rowBytes / sizeof(V));
  V* kScratch = static_cast<V*>(scratch);
  V* vScratch = kScratch + size_t(g.kept) * rowVecs;
  const unsigned grid = gridFor((long long)g.kept * rowVecs);
  cutGatherKernel<V><<<grid, kBlock, 0, stream>>>(static_cast<const V*>(p.kPages), static_cast<const V*>(p.vPages),
                                                  p.srcPageTable, kScratch, vScratch, g, rowVecs);
  throwIfLaunchFailed("cutToStreaming", "cutGatherKernel");
  cutScatterKernel<V><<<grid, kBlock, 0, stream>>>(static_cast<V*>(p.kPages), static_cast<V*>(p.vPages), p.dstPageTable,
                                                   kScratch, vScratch, g, rowVecs);
  throwIfLaunchFailed("cutToStreaming", "cutScatterKernel");
}

template <typename F>
void byWidth(int w, F&& f) {
  switch (w) {
    case 16:
      f(uint4{});
      break;
    case 8:
      f(uint2{});
      break;
    case 4:
      f(uint32_t{});
      break;
    case 2:
      f(uint16_t{});
      break;
    default:
      f(uint8_t{});
      break;
  }
}

CutGeometry cutGeometry(const CutToStreamingParams& p) {
  CutGeometry g;
  g.length = p.length, g.sink = p.sink, g.window = p.window, g.pageSize = p.pageSize;
  g.sinkKept = std::min(p.sink, p.length);
  g.recentBegin = std::max(p.sink, p.length - p.window);
  g.kept = int(std::min<long long>(p.length, (long long)p.sink + p.window));
  return g;
}

void validateCut(const CutToStreamingParams& p) {
  checkCacheDType(p.dtype, "cutToStreaming");
  if (p.length < 0 || p.sink < 0 || p.window < 0 || p.hkv <= 0 || p.d <= 0 || p.pageSize <= 0)
    throw Error("cutToStreaming: length, sink and window must be >= 0 and hkv, d, pageSize > 0 (got length " +
                std::to_string(p.length) + ", sink " + std::to_string(p.sink) + ", window " + std::to_string(p.window) +
                ")");
}

}  // namespace

void appendKv(const AppendKvParams& p, cudaStream_t stream) {
  checkCacheDType(p.dtype, "appendKv");
  if (p.tokens < 0 || p.hkv <= 0 || p.d <= 0 || p.pageSize <= 0)
    throw Error("appendKv: need tokens >= 0 and positive hkv, d and pageSize");
  if (p.tokens == 0) return;
  const size_t rowBytes = size_t(p.hkv) * p.d * dtypeSize(p.dtype);
  const int w = vectorBytes(rowBytes, {p.k, p.v, p.kPages, p.vPages});
  byWidth(w, [&](auto unit) { launchAppend<decltype(unit)>(p, rowBytes, stream); });
}

size_t cutToStreamingScratchBytes(const CutToStreamingParams& p) {
  validateCut(p);
  const CutGeometry g = cutGeometry(p);
  return size_t(g.kept) * p.hkv * p.d * dtypeSize(p.dtype) * 2;  // K then V
}

void cutToStreaming(const CutToStreamingParams& p, void* scratch, cudaStream_t stream) {
  validateCut(p);
  const CutGeometry g = cutGeometry(p);
  if (g.kept == 0) return;
  if (!scratch) throw Error("cutToStreaming: scratch must hold cutToStreamingScratchBytes() bytes");
  const size_t rowBytes = size_t(p.hkv) * p.d * dtypeSize(p.dtype);
  const int w = vectorBytes(rowBytes, {p.kPages, p.vPages, scratch});
  byWidth(w, [&](auto unit) { launchCut<decltype(unit)>(p, g, rowBytes, scratch, stream); });
}

}  // namespace lt::cuda
