// extern "C" shim over lt::cuda decode attention and cache kernels, so tools/gpu/decode_check.py
// can drive them through ctypes with torch tensors' data_ptr(). Not part of the addon.
// Every function returns 0 on success, -1 on an lt::Error (message from lt_last_error()).
// dtype codes follow lt::DType: 0 f32, 1 f16, 2 bf16.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "core/error.h"
#include "cuda/cuda_kernels.h"

namespace {
thread_local std::string lastError;

template <typename F>
int guarded(F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    lastError = e.what();
    return -1;
  }
}

lt::DecodeAttentionParams decodeParams(int dtype, const void* q, const void* kPages, const void* vPages,
                                       const int32_t* pageTable, const int32_t* seqLens, void* out, float* lse,
                                       int batch, int hq, int hkv, int d, int pageSize, int numPages,
                                       int maxPagesPerSeq, float scale) {
  lt::DecodeAttentionParams p;
  p.dtype = lt::DType(dtype);
  p.q = q, p.kPages = kPages, p.vPages = vPages, p.pageTable = pageTable, p.seqLens = seqLens;
  p.out = out, p.lse = lse;
  p.batch = batch, p.hq = hq, p.hkv = hkv, p.d = d;
  p.pageSize = pageSize, p.numPages = numPages, p.maxPagesPerSeq = maxPagesPerSeq, p.scale = scale;
  return p;
}

lt::CutToStreamingParams cutParams(int dtype, void* kPages, void* vPages, const int32_t* src, const int32_t* dst,
                                   int length, int sink, int window, int hkv, int d, int pageSize, int numPages) {
  lt::CutToStreamingParams p;
  p.dtype = lt::DType(dtype);
  p.kPages = kPages, p.vPages = vPages, p.srcPageTable = src, p.dstPageTable = dst;
  p.length = length, p.sink = sink, p.window = window;
  p.hkv = hkv, p.d = d, p.pageSize = pageSize, p.numPages = numPages;
  return p;
}
}  // namespace

extern "C" {

const char* lt_last_error() { return lastError.c_str(); }

int lt_decode_workspace_bytes(int dtype, int batch, int hq, int hkv, int d, int pageSize, int numPages,
                              int maxPagesPerSeq, int smCount, unsigned long long* bytes) {
  return guarded([&] {
    auto p = decodeParams(dtype, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, batch, hq, hkv, d,
                          pageSize, numPages, maxPagesPerSeq, 1.f);
    *bytes = lt::cuda::decodeAttentionWorkspaceBytes(p, smCount);
  });
}

int lt_decode(int dtype, const void* q, const void* kPages, const void* vPages, const int32_t* pageTable,
              const int32_t* seqLens, void* out, float* lse, int batch, int hq, int hkv, int d, int pageSize,
              int numPages, int maxPagesPerSeq, float scale, void* workspace, unsigned long long workspaceBytes,
              int smCount, void* stream) {
  return guarded([&] {
    auto p = decodeParams(dtype, q, kPages, vPages, pageTable, seqLens, out, lse, batch, hq, hkv, d, pageSize,
                          numPages, maxPagesPerSeq, scale);
    lt::cuda::decodeAttention(p, workspace, size_t(workspaceBytes), smCount, static_cast<cudaStream_t>(stream));
  });
}

int lt_append_kv(int dtype, const void* k, const void* v, void* kPages, void* vPages, const int32_t* slots,
                 int tokens, int hkv, int d, int pageSize, int numPages, void* stream) {
  return guarded([&] {
    lt::AppendKvParams p;
    p.dtype = lt::DType(dtype);
    p.k = k, p.v = v, p.kPages = kPages, p.vPages = vPages, p.slots = slots;
    p.tokens = tokens, p.hkv = hkv, p.d = d, p.pageSize = pageSize, p.numPages = numPages;
    lt::cuda::appendKv(p, static_cast<cudaStream_t>(stream));
  });
}

int lt_cut_scratch_bytes(int dtype, int length, int sink, int window, int hkv, int d, int pageSize, int numPages,
                         unsigned long long* bytes) {
  return guarded([&] {
    auto p = cutParams(dtype, nullptr, nullptr, nullptr, nullptr, length, sink, window, hkv, d, pageSize, numPages);
    *bytes = lt::cuda::cutToStreamingScratchBytes(p);
  });
}

int lt_cut_to_streaming(int dtype, void* kPages, void* vPages, const int32_t* src, const int32_t* dst, int length,
                        int sink, int window, int hkv, int d, int pageSize, int numPages, void* scratch,
                        void* stream) {
  return guarded([&] {
    auto p = cutParams(dtype, kPages, vPages, src, dst, length, sink, window, hkv, d, pageSize, numPages);
    lt::cuda::cutToStreaming(p, scratch, static_cast<cudaStream_t>(stream));
  });
}

}  // extern "C"
