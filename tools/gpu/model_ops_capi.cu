// A C ABI over the CUDA model operations of native/cuda/cuda_kernels.h (linear, gemmBackend,
// rmsNorm, rope, swiGlu, embedding, argmax, topCandidates, repetitionPenalty), built as a shared
// library by tools/gpu/run_model_ops.sh so tools/gpu/model_ops_check.py can drive them through
// ctypes on torch tensors (data_ptr(), torch.cuda.current_stream().cuda_stream) without the Node
// addon.
// Dtype codes are lt::DType's (0 f32, 1 f16, 2 bf16). Each function returns 0 on success, or 1
// with lt::Error's message copied into `err`.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "core/error.h"
#include "cuda/cuda_kernels.h"

namespace {
int fail(const char* msg, char* err, int errLen) {
  if (err != nullptr && errLen > 0) std::snprintf(err, size_t(errLen), "%s", msg);
  return 1;
}
lt::DType dt(int code) { return static_cast<lt::DType>(code); }
cudaStream_t st(void* s) { return static_cast<cudaStream_t>(s); }
}  // namespace

extern "C" {

int lt_gemm_backend(char* name, int nameLen, char* detail, int detailLen, char* err, int errLen) {
  try {
    const lt::cuda::GemmBackend b = lt::cuda::gemmBackend(lt::cuda::gemmRequest(""));
    std::snprintf(name, size_t(nameLen), "%s", b.name.c_str());
    std::snprintf(detail, size_t(detailLen), "%s", b.detail.c_str());
    return 0;
  } catch (const std::exception& e) {
    return fail(e.what(), err, errLen);
  }
}

int lt_linear(int xType, int wType, const void* x, const void* w, const void* bias, void* y, int m, int n, int k,
              void* stream, char* err, int errLen) {
  try {
    lt::LinearParams p;
    p.xType = dt(xType);
    p.wType = dt(wType);
    p.x = x;
    p.w = w;
    p.bias = bias;
    p.y = y;
    p.m = m;
    p.n = n;
    p.k = k;
    // LT_LINEAR_CONSTANT_WEIGHT=1: the weights are a decode step's, which no kernel writes.
    const char* constantWeight = std::getenv("LT_LINEAR_CONSTANT_WEIGHT");
    p.constantWeight = constantWeight != nullptr && std::strcmp(constantWeight, "1") == 0;
    lt::cuda::linear(p, lt::cuda::planLinear(p, lt::cuda::gemmRequest("")), nullptr, st(stream));
    return 0;
  } catch (const std::exception& e) {
    return fail(e.what(), err, errLen);
  }
}

int lt_rms_norm(int xType, int wType, const void* x, void* residual, const void* weight, void* y, int rows, int dim,
                float eps, void* stream, char* err, int errLen) {
  try {
    lt::RmsNormParams p;
    p.xType = dt(xType);
    p.wType = dt(wType);
    p.x = x;
    p.residual = residual;
    p.weight = weight;
    p.y = y;
    p.rows = rows;
    p.dim = dim;
    p.eps = eps;
    lt::cuda::rmsNorm(p, st(stream));
    return 0;
  } catch (const std::exception& e) {
    return fail(e.what(), err, errLen);
  }
}

int lt_rope(int dtype, void* q, void* k, const int* positions, const float* invFreq, int tokens, int hq, int hkv,
            int d, void* stream, char* err, int errLen) {
  try {
    lt::RopeParams p;
    p.dtype = dt(dtype);
    p.q = q;
    p.k = k;
    p.positions = positions;
    p.invFreq = invFreq;
    p.tokens = tokens;
    p.hq = hq;
    p.hkv = hkv;
    p.d = d;
    lt::cuda::rope(p, st(stream));
    return 0;
  } catch (const std::exception& e) {
    return fail(e.what(), err, errLen);
  }
}

int lt_swiglu(int dtype, const void* x, void* y, int rows, int inner, void* stream, char* err, int errLen) {
  try {
    lt::SwiGluParams p;
    p.dtype = dt(dtype);
    p.x = x;
    p.y = y;
    p.rows = rows;
    p.inner = inner;
    lt::cuda::swiGlu(p, st(stream));
    return 0;
  } catch (const std::exception& e) {
    return fail(e.what(), err, errLen);
  }
}

int lt_embedding(int tableType, int yType, const int* ids, const void* table, void* y, int tokens, int dim, int vocab,
                 void* stream, char* err, int errLen) {
  try {
    lt::EmbeddingParams p;
    p.tableType = dt(tableType);
    p.yType = dt(yType);
    p.ids = ids;
    p.table = table;
    p.y = y;
    p.tokens = tokens;
    p.dim = dim;
    p.vocab = vocab;
    lt::cuda::embedding(p, st(stream));
    return 0;
  } catch (const std::exception& e) {
    return fail(e.what(), err, errLen);
  }
}

int lt_argmax(int dtype, const void* logits, int* out, int rows, int vocab, void* stream, char* err, int errLen) {
  try {
    lt::ArgmaxParams p;
    p.dtype = dt(dtype);
    p.logits = logits;
    p.out = out;
    p.rows = rows;
    p.vocab = vocab;
    lt::cuda::argmax(p, st(stream));
    return 0;
  } catch (const std::exception& e) {
    return fail(e.what(), err, errLen);
  }
}

int lt_top_candidates(int dtype, const void* logits, const float* temperature, int* ids, float* scores, int* count,
                      float* max, float* mass, int rows, int vocab, int k, int capacity, void* stream, char* err,
                      int errLen) {
  try {
    lt::TopCandidatesParams p;
    p.dtype = dt(dtype);
    p.logits = logits;
    p.temperature = temperature;
    p.ids = ids;
    p.scores = scores;
    p.count = count;
    p.max = max;
    p.mass = mass;
    p.rows = rows;
    p.vocab = vocab;
    p.k = k;
    p.capacity = capacity;
    lt::cuda::topCandidates(p, st(stream));
    return 0;
  } catch (const std::exception& e) {
    return fail(e.what(), err, errLen);
  }
}

int lt_repetition_penalty(int dtype, void* logits, const int* ids, const int* offsets, const float* penalty, int rows,
                          int vocab, void* stream, char* err, int errLen) {
  try {
    lt::RepetitionPenaltyParams p;
    p.dtype = dt(dtype);
    p.logits = logits;
    p.ids = ids;
    p.offsets = offsets;
    p.penalty = penalty;
    p.rows = rows;
    p.vocab = vocab;
    lt::cuda::repetitionPenalty(p, st(stream));
    return 0;
  } catch (const std::exception& e) {
    return fail(e.what(), err, errLen);
  }
}

}  // extern "C"
