// A C ABI over lt::cuda::prefillAttention and lt::cuda::lazyRatio, built as a shared
// library by tools/gpu/run_prefill.sh so tools/gpu/prefill_check.py can drive the kernels
// through ctypes on torch tensors (data_ptr()) without the Node addon.
// Each function returns 0 on success, or 1 with lt::Error's message copied into `err`.
#include <cstdio>
#include <cstring>
#include <exception>

#include "core/error.h"
#include "cuda/cuda_kernels.h"

namespace {
int fail(const char* msg, char* err, int errLen) {
  if (err != nullptr && errLen > 0) std::snprintf(err, size_t(errLen), "%s", msg);
  return 1;
}
}  // namespace

extern "C" {

int lt_prefill_attention(int dtype, const void* q, const void* k, const void* v, void* out, float* lse,
                         float* ratio, int nq, int nk, int hq, int hkv, int d, float scale, int maskOn, int sink,
                         int window, int ratioOn, int ratioSink, int ratioWindow, int lastQueries, int kernel,
                         void* stream, char* err, int errLen) {
  try {
    lt::PrefillAttentionParams p;
    p.dtype = static_cast<lt::DType>(dtype);
    p.q = q;
    p.k = k;
    p.v = v;
    p.out = out;
    p.lse = lse;
    p.lazyRatio = ratio;
    p.nq = nq;
    p.nk = nk;
    p.hq = hq;
    p.hkv = hkv;
    p.d = d;
    p.scale = scale;
    p.mask.enabled = maskOn != 0;
    p.mask.sink = sink;
    p.mask.window = window;
    p.ratio.enabled = ratioOn != 0;
    p.ratio.sink = ratioSink;
    p.ratio.window = ratioWindow;
    p.ratio.lastQueries = lastQueries;
    if (kernel < 0 || kernel > int(lt::PrefillKernel::Unspecified))
      return fail("kernel must be 0 (auto), 1 (mmaSync), 2 (wgmma) or 3 (unspecified)", err, errLen);
    p.kernel = static_cast<lt::PrefillKernel>(kernel);
    lt::cuda::prefillAttention(p, static_cast<cudaStream_t>(stream));
    return 0;
  } catch (const std::exception& e) {
    return fail(e.what(), err, errLen);
  }
}

int lt_lazy_ratio(int dtype, const void* q, const void* k, const float* lse, float* ratio, int nq, int nk, int hq,
                  int hkv, int d, float scale, int ratioSink, int ratioWindow, int lastQueries, void* stream, char* err,
                  int errLen) {
  try {
    lt::LazyRatioParams p;
    p.dtype = static_cast<lt::DType>(dtype);
    p.q = q;
    p.k = k;
    p.lse = lse;
    p.ratio = ratio;
    p.nq = nq;
    p.nk = nk;
    p.hq = hq;
    p.hkv = hkv;
    p.d = d;
    p.scale = scale;
    p.spec.enabled = true;
    p.spec.sink = ratioSink;
    p.spec.window = ratioWindow;
    p.spec.lastQueries = lastQueries;
    lt::cuda::lazyRatio(p, static_cast<cudaStream_t>(stream));
    return 0;
  } catch (const std::exception& e) {
    return fail(e.what(), err, errLen);
  }
}

}  // extern "C"
