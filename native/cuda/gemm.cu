// Linear on CUDA: y[m, n] = input(x)[m, k] · w[n, k]ᵀ (+ bias[n]), or y += the same, row-major,
// x/w/y/bias/norm all bf16 or all f16, f32 accumulation (a Hugging Face Linear with its weights as
// stored; the input transform and accumulate as model_params.h defines them). With accumulate,
// cuBLAS runs with beta = 1 and C = D = y, the fallback kernel adds y in its epilogue.
//
// Backends, in order of preference (gemmBackend() says which one runs and why):
//   cublasLt  libcublasLt.so.13 (else .so.12, else unversioned; also under /usr/local/cuda/lib64)
//             opened with dlopen on first use; the dozen entry points below are found with dlsym
//             and their enums/structs declared here, since the build machines have no cuBLAS
//             headers. Row-major y = x·wᵀ is the column-major product yᵀ[n, m] = w[k, n]ᵀ·x[k, m]
//             ("TN"); bias rides the BIAS epilogue. One handle per device, created lazily; one
//             32 MiB workspace per (device, stream), cudaMalloc'd once; the heuristic's first
//             choice is cached per (device, dtype, m, n, k, bias, pointer alignments).
//   cublas    libcublas.so.*: cublasGemmEx, used when the Lt entry points are missing or Lt
//             offers no algorithm for a shape.
//   fallback  gemmFallbackKernel below, when neither library opens, or when asked for.
// Which backend a call asks for is its `gemm` choice, else the environment variable
// LIGHTTRANSFER_GEMM (read on every call), else auto (gemmRequest):
//   auto            the GEMV for a product of 1 or 2 rows where it applies (every projection of
//                   a decode step of one or two sequences: the norm goes inside it for q|k|v,
//                   gate|up and the lm head, and SwiGLU into gate|up's epilogue); every
//                   other product on the list above (the default; bench/README.md has the
//                   per-projection figures and the step);
//   cublasLt        every product on the list above;
//   gemv            products of 1 to 4 rows on the small-batch GEMV of gemv.cu where it applies
//                   (smallBatchLinearApplies), the rest on the list;
//   gemv-only       the GEMV, or an error where it does not apply (for tests);
//   cublas          cublasGemmEx; fallback: the in-house kernel.
// An input transform runs inside the GEMV where that stays memory-bound (RMSNorm up to two rows,
// smallBatchLinearFusesInput), else as its own kernel into scratch before the product; an output
// transform (SwiGLU, RoPE + the K/V append) runs in the GEMV's epilogue where it applies
// (smallBatchLinearFusesOutput), else as its own kernel on the product in scratch (planLinear
// decides).
//
// gemmFallbackKernel<T, kVec>: grid (ceil(n/64), ceil(m/64)), block 128 (4 warps, 2×2, 32×32
//   outputs each), static shared memory 2 stages × (64 + 64) × 40 × 2 B = 20 KiB. K advances 32 at
//   a time: the next x/w tiles are loaded into registers (16-byte loads when k % 8 == 0 and the
//   pointers are 16-byte aligned, else element by element with bounds checks) while the tensor
//   cores (mma.sync m16n8k16, f32 accumulators) work on the current tile from shared memory.
//   Out-of-range rows, columns and k are zero-filled, so any m, n, k >= 0 is correct. Simple
//   rather than fast: no cp.async pipeline, no ldmatrix, no split-k.
// biasKernel<T>: y[r, j] = (y[r, j] +) bias[j] when k == 0 on the library paths (nothing to
//   multiply).
// addBiasKernel<T>: y[r, j] += bias[j] after cublasGemmEx, which has no bias epilogue.
//   Both grid-stride, block 256.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <library_types.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>

#include "core/error.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_kernels.h"
#include "model_common.cuh"

namespace lt::cuda {
namespace {

void checkCuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    cudaGetLastError();  // an allocation failure is not sticky: clear it so later calls work
    throw Error(std::string("linear: ") + what + " failed: " + cudaGetErrorString(err));
  }
}

// ============================================================================ fallback GEMM
constexpr int kBM = 64, kBN = 64, kBK = 32, kPad = 8, kGemmThreads = 128;
constexpr int kLds = kBK + kPad;  // shared-memory row stride in elements: 80 B, conflict-free fragments

template <typename T>
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  if constexpr (std::is_same_v<T, bf16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
}

// Eight elements of row `row` (of `rows`), columns k0 .. k0+7 (of k), zero outside.
template <typename T, bool kVec>
__device__ __forceinline__ uint4 loadChunk(const T* base, int row, int rows, int k0, int k) {
  uint4 u = make_uint4(0u, 0u, 0u, 0u);
  if (row >= rows) return u;
  const T* p = base + size_t(row) * k + k0;
  if constexpr (kVec) {
    if (k0 < k) u = __ldg(reinterpret_cast<const uint4*>(p));  // k % 8 == 0: the chunk is whole
  } else {
    unsigned short h[8];
#pragma unroll
    for (int j = 0; j < 8; j++) h[j] = k0 + j < k ? reinterpret_cast<const unsigned short*>(p)[j] : 0;
    u.x = h[0] | (uint32_t(h[1]) << 16);
    u.y = h[2] | (uint32_t(h[3]) << 16);
    u.z = h[4] | (uint32_t(h[5]) << 16);
    u.w = h[6] | (uint32_t(h[7]) << 16);
  }
  return u;
}

template <typename T, bool kVec>
__global__ void __launch_bounds__(kGemmThreads)
    gemmFallbackKernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias, T* __restrict__ y,
                       int m, int n, int k, bool accumulate) {
  __shared__ alignas(16) T As[2][kBM][kLds];
  __shared__ alignas(16) T Bs[2][kBN][kLds];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t4 = lane & 3;
  const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
  const int m0 = blockIdx.y * kBM, n0 = blockIdx.x * kBN;

  // Each thread moves two 8-element chunks of the x tile and two of the w tile per K step.
  int cRow[2], cCol[2];
#pragma unroll
  for (int i = 0; i < 2; i++) {
    const int v = tid + i * kGemmThreads;  // 0..255: 64 rows × 4 chunks
    cRow[i] = v >> 2;
    cCol[i] = (v & 3) * 8;
  }
  uint4 ra[2], rb[2];
  auto fetch = [&](int k0) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
      ra[i] = loadChunk<T, kVec>(x, m0 + cRow[i], m, k0 + cCol[i], k);
      rb[i] = loadChunk<T, kVec>(w, n0 + cRow[i], n, k0 + cCol[i], k);
    }
  };
  auto stash = [&](int buf) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
      *reinterpret_cast<uint4*>(&As[buf][cRow[i]][cCol[i]]) = ra[i];
      *reinterpret_cast<uint4*>(&Bs[buf][cRow[i]][cCol[i]]) = rb[i];
    }
  };

  float acc[2][4][4];
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) acc[i][j][e] = 0.f;

  const int steps = (k + kBK - 1) / kBK;
  if (steps > 0) {
    fetch(0);
    stash(0);
  }
  __syncthreads();
  for (int s = 0; s < steps; s++) {
    const int buf = s & 1;
    if (s + 1 < steps) fetch((s + 1) * kBK);
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
      uint32_t a[2][4], b[4][2];
#pragma unroll
      for (int i = 0; i < 2; i++) {
        const int r = wm + i * 16 + g;
        a[i][0] = *reinterpret_cast<const uint32_t*>(&As[buf][r][kk + 2 * t4]);
        a[i][1] = *reinterpret_cast<const uint32_t*>(&As[buf][r + 8][kk + 2 * t4]);
        a[i][2] = *reinterpret_cast<const uint32_t*>(&As[buf][r][kk + 2 * t4 + 8]);
        a[i][3] = *reinterpret_cast<const uint32_t*>(&As[buf][r + 8][kk + 2 * t4 + 8]);
      }
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const int c = wn + j * 8 + g;
        b[j][0] = *reinterpret_cast<const uint32_t*>(&Bs[buf][c][kk + 2 * t4]);
        b[j][1] = *reinterpret_cast<const uint32_t*>(&Bs[buf][c][kk + 2 * t4 + 8]);
      }
#pragma unroll
      for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) mma16816<T>(acc[i][j], a[i], b[j]);
    }
    // The other buffer was last read in step s-1, before the barrier that ended it.
    if (s + 1 < steps) stash(buf ^ 1);
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 2; i++) {
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const int col = n0 + wn + j * 8 + 2 * t4;
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int r = m0 + wm + i * 16 + g + (e >> 1) * 8;
        const int c = col + (e & 1);
        if (r < m && c < n) {
          float v = acc[i][j][e];
          if (bias != nullptr) v += toF(bias[c]);
          if (accumulate) v = toF(y[size_t(r) * n + c]) + v;
          y[size_t(r) * n + c] = fromF<T>(v);
        }
      }
    }
  }
}

template <typename T>
__global__ void biasKernel(const T* __restrict__ bias, T* __restrict__ y, long long total, int n, bool accumulate) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    const float b = bias != nullptr ? toF(bias[i % n]) : 0.f;
    y[i] = fromF<T>(accumulate ? toF(y[i]) + b : b);
  }
}

template <typename T>
void launchFallback(const LinearParams& p, cudaStream_t stream) {
  const T* x = static_cast<const T*>(p.x);
  const T* w = static_cast<const T*>(p.w);
  const T* bias = static_cast<const T*>(p.bias);
  T* y = static_cast<T*>(p.y);
  const dim3 grid(unsigned((p.n + kBN - 1) / kBN), unsigned((p.m + kBM - 1) / kBM));
  if (grid.y > 65535u) throw Error("linear: m = " + std::to_string(p.m) + " is too large for the fallback GEMM");
  const bool vec =
      p.k % 8 == 0 && reinterpret_cast<uintptr_t>(p.x) % 16 == 0 && reinterpret_cast<uintptr_t>(p.w) % 16 == 0;
  if (vec) {
    gemmFallbackKernel<T, true><<<grid, kGemmThreads, 0, stream>>>(x, w, bias, y, p.m, p.n, p.k, p.accumulate);
  } else {
    gemmFallbackKernel<T, false><<<grid, kGemmThreads, 0, stream>>>(x, w, bias, y, p.m, p.n, p.k, p.accumulate);
  }
  throwIfLaunchFailed("linear", "gemmFallbackKernel");
}

template <typename T>
void launchBiasOnly(const LinearParams& p, cudaStream_t stream) {
  const long long total = (long long)p.m * p.n;
  const unsigned grid = unsigned(std::min<long long>(16384, (total + 255) / 256));
  biasKernel<T>
      <<<grid, 256, 0, stream>>>(static_cast<const T*>(p.bias), static_cast<T*>(p.y), total, p.n, p.accumulate);
  throwIfLaunchFailed("linear", "biasKernel");
}

// ============================================================================ cuBLAS ABI
// The few declarations cublasLt.h / cublas_api.h would give (values as in CUDA 12 and 13).
using cublasStatus_t = int;
using cublasLtHandle_t = void*;
using cublasLtMatmulDesc_t = void*;
using cublasLtMatrixLayout_t = void*;
using cublasLtMatmulPreference_t = void*;
using cublasHandle_t = void*;
struct cublasLtMatmulAlgo_t {
  uint64_t data[8];
};
struct cublasLtMatmulHeuristicResult_t {
  cublasLtMatmulAlgo_t algo;
  size_t workspaceSize;
  cublasStatus_t state;
  float wavesCount;
  int reserved[4];
};
constexpr cublasStatus_t CUBLAS_STATUS_SUCCESS = 0;
constexpr int CUBLAS_COMPUTE_32F = 68;
constexpr int CUBLAS_OP_N = 0, CUBLAS_OP_T = 1;
constexpr int CUBLAS_GEMM_DEFAULT = -1;
constexpr int CUBLASLT_MATMUL_DESC_TRANSA = 3, CUBLASLT_MATMUL_DESC_TRANSB = 4, CUBLASLT_MATMUL_DESC_EPILOGUE = 7,
              CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8;
constexpr uint32_t CUBLASLT_EPILOGUE_DEFAULT = 1, CUBLASLT_EPILOGUE_BIAS = 4;
constexpr int CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
              CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
              CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8;
constexpr size_t kWorkspaceBytes = size_t(32) << 20;
constexpr size_t kMaxStreamsWithWorkspace = 16;
constexpr size_t kMaxPlans = 4096;

struct Api {
  // cuBLASLt
  void* lt = nullptr;
  std::string ltName, ltWhy;
  cublasStatus_t (*ltCreate)(cublasLtHandle_t*) = nullptr;
  cublasStatus_t (*ltMatmulDescCreate)(cublasLtMatmulDesc_t*, int, cudaDataType_t) = nullptr;
  cublasStatus_t (*ltMatmulDescSetAttribute)(cublasLtMatmulDesc_t, int, const void*, size_t) = nullptr;
  cublasStatus_t (*ltMatrixLayoutCreate)(cublasLtMatrixLayout_t*, cudaDataType_t, uint64_t, uint64_t,
                                         int64_t) = nullptr;
  cublasStatus_t (*ltMatmulPreferenceCreate)(cublasLtMatmulPreference_t*) = nullptr;
  cublasStatus_t (*ltMatmulPreferenceSetAttribute)(cublasLtMatmulPreference_t, int, const void*, size_t) = nullptr;
  cublasStatus_t (*ltMatmulPreferenceDestroy)(cublasLtMatmulPreference_t) = nullptr;
  cublasStatus_t (*ltMatmulAlgoGetHeuristic)(cublasLtHandle_t, cublasLtMatmulDesc_t, cublasLtMatrixLayout_t,
                                             cublasLtMatrixLayout_t, cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,
                                             cublasLtMatmulPreference_t, int, cublasLtMatmulHeuristicResult_t*,
                                             int*) = nullptr;
  cublasStatus_t (*ltMatmul)(cublasLtHandle_t, cublasLtMatmulDesc_t, const void*, const void*, cublasLtMatrixLayout_t,
                             const void*, cublasLtMatrixLayout_t, const void*, const void*, cublasLtMatrixLayout_t,
                             void*, cublasLtMatrixLayout_t, const cublasLtMatmulAlgo_t*, void*, size_t,
                             cudaStream_t) = nullptr;
  size_t (*ltGetVersion)() = nullptr;                        // optional
  const char* (*ltGetStatusName)(cublasStatus_t) = nullptr;  // optional
  // cuBLAS
  void* blas = nullptr;
  std::string blasName, blasWhy;
  cublasStatus_t (*create)(cublasHandle_t*) = nullptr;
  cublasStatus_t (*setStream)(cublasHandle_t, cudaStream_t) = nullptr;
  cublasStatus_t (*setWorkspace)(cublasHandle_t, void*, size_t) = nullptr;
  cublasStatus_t (*gemmEx)(cublasHandle_t, int, int, int, int, int, const void*, const void*, cudaDataType_t, int,
                           const void*, cudaDataType_t, int, const void*, void*, cudaDataType_t, int, int,
                           int) = nullptr;

  bool ltOk() const { return lt != nullptr; }
  bool blasOk() const { return blas != nullptr; }
};

// Opens the first library of `names` that loads; on failure `why` names the first and its error.
void* openFirst(std::initializer_list<const char*> names, std::string& opened, std::string& why) {
  std::string firstError;
  for (const char* name : names) {
    void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (h != nullptr) {
      opened = name;
      return h;
    }
    const char* e = dlerror();
    if (firstError.empty()) firstError = std::string(name) + " not found: " + (e != nullptr ? e : "dlopen failed");
  }
  why = firstError;
  return nullptr;
}

template <typename Fn>
bool bind(void* lib, const char* symbol, Fn& fn, std::string& missing) {
  fn = reinterpret_cast<Fn>(dlsym(lib, symbol));
  if (fn == nullptr && missing.empty()) missing = symbol;
  return fn != nullptr;
}

const Api& api() {
  static Api a;
  static std::once_flag once;
  std::call_once(once, [] {
    a.lt = openFirst({"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so",
                      "/usr/local/cuda/lib64/libcublasLt.so.13", "/usr/local/cuda/lib64/libcublasLt.so.12"},
                     a.ltName, a.ltWhy);
    if (a.lt != nullptr) {
      std::string missing;
      bind(a.lt, "cublasLtCreate", a.ltCreate, missing);
      bind(a.lt, "cublasLtMatmulDescCreate", a.ltMatmulDescCreate, missing);
      bind(a.lt, "cublasLtMatmulDescSetAttribute", a.ltMatmulDescSetAttribute, missing);
      bind(a.lt, "cublasLtMatrixLayoutCreate", a.ltMatrixLayoutCreate, missing);
      bind(a.lt, "cublasLtMatmulPreferenceCreate", a.ltMatmulPreferenceCreate, missing);
      bind(a.lt, "cublasLtMatmulPreferenceSetAttribute", a.ltMatmulPreferenceSetAttribute, missing);
      bind(a.lt, "cublasLtMatmulPreferenceDestroy", a.ltMatmulPreferenceDestroy, missing);
      bind(a.lt, "cublasLtMatmulAlgoGetHeuristic", a.ltMatmulAlgoGetHeuristic, missing);
      bind(a.lt, "cublasLtMatmul", a.ltMatmul, missing);
      if (!missing.empty()) {
        a.ltWhy = a.ltName + " lacks " + missing;
        dlclose(a.lt);
        a.lt = nullptr;
      } else {
        std::string ignore;
        bind(a.lt, "cublasLtGetVersion", a.ltGetVersion, ignore);
        bind(a.lt, "cublasLtGetStatusName", a.ltGetStatusName, ignore);
      }
    }
    a.blas = openFirst({"libcublas.so.13", "libcublas.so.12", "libcublas.so", "/usr/local/cuda/lib64/libcublas.so.13",
                        "/usr/local/cuda/lib64/libcublas.so.12"},
                       a.blasName, a.blasWhy);
    if (a.blas != nullptr) {
      std::string missing;
      bind(a.blas, "cublasCreate_v2", a.create, missing);
      bind(a.blas, "cublasSetStream_v2", a.setStream, missing);
      bind(a.blas, "cublasSetWorkspace_v2", a.setWorkspace, missing);
      bind(a.blas, "cublasGemmEx", a.gemmEx, missing);
      if (!missing.empty()) {
        a.blasWhy = a.blasName + " lacks " + missing;
        dlclose(a.blas);
        a.blas = nullptr;
      }
    }
  });
  return a;
}

std::string statusText(cublasStatus_t s) {
  const Api& a = api();
  std::string text = "status " + std::to_string(s);
  if (a.ltGetStatusName != nullptr) {
    const char* name = a.ltGetStatusName(s);
    if (name != nullptr) text += " (" + std::string(name) + ")";
  }
  return text;
}

void checkBlas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw Error(std::string("linear: ") + what + " failed: " + statusText(s));
}

GemmRequest parseGemmRequest(const std::string& v, const char* source) {
  if (v == "gemv") return GemmRequest::SmallBatch;
  if (v == "gemv-only") return GemmRequest::SmallBatchOnly;
  if (v == "auto") return GemmRequest::Auto;
  if (v == "cublasLt") return GemmRequest::Library;
  if (v == "cublas") return GemmRequest::Blas;
  if (v == "fallback") return GemmRequest::Fallback;
  throw Error(std::string(source) + " must be auto, cublasLt, gemv, gemv-only, cublas or fallback, not '" + v + "'");
}

// ============================================================================ per-device state
enum class Path { Lt, Blas, Fallback };

struct PlanKey {
  int dtype, m, n, k, bias, alignX, alignW, alignY, alignBias, workspace;
  bool operator<(const PlanKey& o) const {
    return std::tie(dtype, m, n, k, bias, alignX, alignW, alignY, alignBias, workspace) <
           std::tie(o.dtype, o.m, o.n, o.k, o.bias, o.alignX, o.alignW, o.alignY, o.alignBias, o.workspace);
  }
};

struct Plan {
  Path path = Path::Fallback;
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;
};

struct DeviceState {
  std::mutex mu;  // held for a whole linear() on the device: plans, handles and descs are shared
  cublasLtHandle_t lt = nullptr;
  cublasHandle_t blas = nullptr;
  std::map<cudaStream_t, void*> workspaces;
  std::map<PlanKey, Plan> plans;
};

DeviceState& deviceState(int device) {
  static std::mutex mu;
  static std::map<int, std::unique_ptr<DeviceState>> states;
  std::lock_guard<std::mutex> lock(mu);
  auto& s = states[device];
  if (!s) s = std::make_unique<DeviceState>();
  return *s;
}

// The stream's workspace, allocated once; none (size 0) while the stream is being captured
// into a graph (cudaMalloc is not allowed then), once too many streams have one, or while the
// device is out of memory (cuBLAS runs without one, and a later call tries again).
void* workspaceFor(DeviceState& st, cudaStream_t stream) {
  auto it = st.workspaces.find(stream);
  if (it != st.workspaces.end()) return it->second;
  if (st.workspaces.size() >= kMaxStreamsWithWorkspace) return nullptr;
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  checkCuda(cudaStreamIsCapturing(stream, &capture), "cudaStreamIsCapturing");
  if (capture != cudaStreamCaptureStatusNone) return nullptr;
  void* ws = nullptr;
  cudaError_t err = cudaMalloc(&ws, kWorkspaceBytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    int device = 0;
    if (cudaGetDevice(&device) == cudaSuccess) releaseIdleMemory(device);  // the pool may hold what this needs
    err = cudaMalloc(&ws, kWorkspaceBytes);
  }
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    return nullptr;
  }
  checkCuda(err, "cudaMalloc of the 32 MiB cuBLAS workspace");
  st.workspaces[stream] = ws;
  return ws;
}

int alignmentOf(const void* p) {
  const uintptr_t v = reinterpret_cast<uintptr_t>(p);
  int a = 256;
  while (a > 1 && v % a != 0) a >>= 1;
  return a;
}

cudaDataType_t cudaType(DType t) {
  return t == DType::BF16 ? CUDA_R_16BF : CUDA_R_16F;
}

// Builds the cuBLASLt descriptors for a shape and asks the heuristic for its first choice; a
// plan with path Blas/Fallback when Lt has none.
Plan makeLtPlan(DeviceState& st, const LinearParams& p, const PlanKey& key, size_t wsBytes) {
  const Api& a = api();
  Plan plan;
  const cudaDataType_t t = cudaType(p.xType);
  checkBlas(a.ltMatmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
  const int32_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
  checkBlas(a.ltMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof(opT)), "set TRANSA");
  checkBlas(a.ltMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof(opN)), "set TRANSB");
  const uint32_t epilogue = p.bias != nullptr ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
  checkBlas(a.ltMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)),
            "set EPILOGUE");
  if (p.bias != nullptr)
    checkBlas(a.ltMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p.bias, sizeof(p.bias)),
              "set BIAS_POINTER");
  // Column-major view: A = w as [k, n] (ld k), transposed; B = x as [k, m] (ld k); D = y as [n, m].
  checkBlas(a.ltMatrixLayoutCreate(&plan.a, t, uint64_t(p.k), uint64_t(p.n), p.k), "cublasLtMatrixLayoutCreate");
  checkBlas(a.ltMatrixLayoutCreate(&plan.b, t, uint64_t(p.k), uint64_t(p.m), p.k), "cublasLtMatrixLayoutCreate");
  checkBlas(a.ltMatrixLayoutCreate(&plan.d, t, uint64_t(p.n), uint64_t(p.m), p.n), "cublasLtMatrixLayoutCreate");

  cublasLtMatmulPreference_t pref = nullptr;
  checkBlas(a.ltMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  const uint64_t ws = wsBytes;
  // cuBLAS's A is our w, its B our x, its C and D our y.
  const uint32_t alA = uint32_t(key.alignW), alB = uint32_t(key.alignX), alD = uint32_t(key.alignY);
  a.ltMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  a.ltMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &alA, sizeof(alA));
  a.ltMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &alB, sizeof(alB));
  a.ltMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &alD, sizeof(alD));
  a.ltMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &alD, sizeof(alD));
  // Room for more than one result in case a later library grows the struct.
  cublasLtMatmulHeuristicResult_t results[4];
  std::memset(results, 0, sizeof(results));
  int count = 0;
  const cublasStatus_t s =
      a.ltMatmulAlgoGetHeuristic(st.lt, plan.desc, plan.a, plan.b, plan.d, plan.d, pref, 1, results, &count);
  a.ltMatmulPreferenceDestroy(pref);
  if (s == CUBLAS_STATUS_SUCCESS && count > 0 && results[0].state == CUBLAS_STATUS_SUCCESS) {
    plan.path = Path::Lt;
    plan.algo = results[0].algo;
    plan.workspace = results[0].workspaceSize;
  } else {
    plan.path = a.blasOk() ? Path::Blas : Path::Fallback;
  }
  return plan;
}

void runBlas(DeviceState& st, const LinearParams& p, cudaStream_t stream, void* ws) {
  const Api& a = api();
  if (st.blas == nullptr) checkBlas(a.create(&st.blas), "cublasCreate");
  checkBlas(a.setStream(st.blas, stream), "cublasSetStream");  // resets the workspace: set it after
  if (ws != nullptr) checkBlas(a.setWorkspace(st.blas, ws, kWorkspaceBytes), "cublasSetWorkspace");
  const float one = 1.f, beta = p.accumulate ? 1.f : 0.f;
  const cudaDataType_t t = cudaType(p.xType);
  checkBlas(a.gemmEx(st.blas, CUBLAS_OP_T, CUBLAS_OP_N, p.n, p.m, p.k, &one, p.w, t, p.k, p.x, t, p.k, &beta, p.y, t,
                     p.n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            "cublasGemmEx");
}

template <typename T>
__global__ void addBiasKernel(const T* __restrict__ bias, T* __restrict__ y, long long total, int n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x)
    y[i] = fromF<T>(toF(y[i]) + toF(bias[i % n]));
}

template <typename T>
void launchAddBias(const LinearParams& p, cudaStream_t stream) {
  const long long total = (long long)p.m * p.n;
  const unsigned grid = unsigned(std::min<long long>(16384, (total + 255) / 256));
  addBiasKernel<T><<<grid, 256, 0, stream>>>(static_cast<const T*>(p.bias), static_cast<T*>(p.y), total, p.n);
  throwIfLaunchFailed("linear", "addBiasKernel");
}

// The product of p (its input already transformed unless the GEMV does it) on the route's backend.
template <typename T>
void runLinear(const LinearParams& p, const LinearPlan& plan, cudaStream_t stream) {
  const GemmRequest mode = plan.request;
  if (plan.gemv) {
    smallBatchLinear(p, stream);
    return;
  }
  if (p.input != LinearInput::Plain || p.output != LinearOutput::Plain)
    throw Error("linear: internal: the library was handed an input or output transform");
  const Api& a = api();
  if (mode == GemmRequest::Fallback || (!a.ltOk() && !a.blasOk())) {
    launchFallback<T>(p, stream);
    return;
  }
  if (mode == GemmRequest::Blas && !a.blasOk())
    throw Error("linear: gemm cublas was asked for but cuBLAS is unavailable: " + a.blasWhy);
  if (p.k == 0) {  // nothing to multiply: y = bias (or 0)
    launchBiasOnly<T>(p, stream);
    return;
  }
  int device = 0;
  checkCuda(cudaGetDevice(&device), "cudaGetDevice");
  DeviceState& st = deviceState(device);
  std::lock_guard<std::mutex> lock(st.mu);
  void* ws = workspaceFor(st, stream);

  Path path = mode == GemmRequest::Blas || !a.ltOk() ? Path::Blas : Path::Lt;
  Plan* ltPlan = nullptr;
  if (path == Path::Lt) {
    if (st.lt == nullptr) checkBlas(a.ltCreate(&st.lt), "cublasLtCreate");
    PlanKey key{};
    key.dtype = int(p.xType);
    key.m = p.m;
    key.n = p.n;
    key.k = p.k;
    key.bias = p.bias != nullptr ? 1 : 0;
    key.alignX = alignmentOf(p.x);
    key.alignW = alignmentOf(p.w);
    key.alignY = alignmentOf(p.y);
    key.alignBias = p.bias != nullptr ? alignmentOf(p.bias) : 0;
    key.workspace = ws != nullptr ? 1 : 0;
    auto it = st.plans.find(key);
    if (it == st.plans.end()) {
      if (st.plans.size() >= kMaxPlans) st.plans.clear();  // descriptors are leaked: rare, small
      it = st.plans.emplace(key, makeLtPlan(st, p, key, ws != nullptr ? kWorkspaceBytes : 0)).first;
    }
    ltPlan = &it->second;
    path = ltPlan->path;
  }
  switch (path) {
    case Path::Lt: {
      if (p.bias != nullptr)
        checkBlas(a.ltMatmulDescSetAttribute(ltPlan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p.bias, sizeof(p.bias)),
                  "set BIAS_POINTER");
      // D = W·X + beta·C (+ bias), C = D = y: beta 1 accumulates into y, rounding once.
      const float one = 1.f, beta = p.accumulate ? 1.f : 0.f;
      checkBlas(a.ltMatmul(st.lt, ltPlan->desc, &one, p.w, ltPlan->a, p.x, ltPlan->b, &beta, p.y, ltPlan->d, p.y,
                           ltPlan->d, &ltPlan->algo, ltPlan->workspace > 0 ? ws : nullptr, ltPlan->workspace, stream),
                "cublasLtMatmul");
      return;
    }
    case Path::Blas: {
      // cublasGemmEx has no bias epilogue: added after it, the bias would round an accumulated y
      // a second time, so that one case takes the fallback GEMM, which rounds once.
      if (p.accumulate && p.bias != nullptr) {
        launchFallback<T>(p, stream);
        return;
      }
      LinearParams q = p;
      q.bias = nullptr;
      runBlas(st, q, stream, ws);
      if (p.bias != nullptr) launchAddBias<T>(p, stream);
      return;
    }
    case Path::Fallback:
      launchFallback<T>(p, stream);
      return;
  }
}

// On an H200 (bench/README.md) a batch-1 decode step with every product on the GEMV was faster than
// with o and down on cuBLASLt; at two rows, as at one, the GEMV read q|k|v, o and down faster than
// cuBLASLt and gate|up and the lm head within 3%. Three and four rows were not measured against
// the library, so they stay on it.
bool autoPicksSmallBatch(const LinearParams& p) {
  return p.m <= 2 && smallBatchLinearApplies(p);
}

}  // namespace

// LIGHTTRANSFER_GEMM is read on every call without a choice, so a script can switch backends
// within one process.
GemmRequest gemmRequest(const std::string& given) {
  if (!given.empty()) return parseGemmRequest(given, "gemm");
  const char* env = std::getenv("LIGHTTRANSFER_GEMM");
  if (env == nullptr || *env == 0) return GemmRequest::Auto;
  return parseGemmRequest(env, "LIGHTTRANSFER_GEMM");
}

GemmBackend gemmBackend(GemmRequest mode) {
  const Api& a = api();
  if (mode == GemmRequest::Fallback) return {"fallback", "forced (gemm fallback)"};
  if (mode == GemmRequest::Blas) {
    if (a.blasOk()) return {"cublas", a.blasName + " (forced: gemm cublas)"};
    return {"fallback", "gemm cublas was asked for but " + a.blasWhy};
  }
  if (mode == GemmRequest::SmallBatchOnly) return {"gemv", "forced: gemm gemv-only (1 to 4 rows only)"};
  std::string smallBatch;
  if (mode == GemmRequest::SmallBatch) smallBatch = "; 1 to 4 rows on the small-batch GEMV";
  if (mode == GemmRequest::Auto) smallBatch = "; products of 1-2 rows on the small-batch GEMV";
  if (a.ltOk()) {
    std::string detail = a.ltName;
    if (a.ltGetVersion != nullptr) detail += " (version " + std::to_string(a.ltGetVersion()) + ")";
    return {"cublasLt", detail + smallBatch};
  }
  if (a.blasOk()) return {"cublas", a.blasName + "; " + a.ltWhy + smallBatch};
  return {"fallback", a.ltWhy + smallBatch};
}

LinearPlan planLinear(const LinearParams& p, GemmRequest request) {
  LinearPlan plan;
  plan.request = request;
  if (p.m <= 0 || p.n <= 0) return plan;
  const GemmRequest mode = plan.request;
  const bool asksForGemv = mode == GemmRequest::SmallBatch || mode == GemmRequest::SmallBatchOnly;
  plan.gemv = mode == GemmRequest::Auto ? autoPicksSmallBatch(p) : asksForGemv && smallBatchLinearApplies(p);
  if (mode == GemmRequest::SmallBatchOnly && !plan.gemv)
    throw Error("linear: gemv-only was asked for but the small-batch GEMV does not take this call (it needs 1-" +
                std::to_string(kSmallBatchLinearMaxRows) +
                " bf16/f16 rows, k % 8 == 0, 16-byte aligned x, w and norm, and out apart from x; got m = " +
                std::to_string(p.m) + ", k = " + std::to_string(p.k) + ")");
  plan.separateTransform = p.input != LinearInput::Plain && p.k > 0 && !(plan.gemv && smallBatchLinearFusesInput(p));
  plan.separateOutput = p.output != LinearOutput::Plain && !(plan.gemv && smallBatchLinearFusesOutput(p));
  const size_t element = dtypeSize(p.xType);
  // The product's scratch starts on a 256-byte boundary, as the libraries want their matrices.
  plan.productOffset = plan.separateTransform ? (size_t(p.m) * p.k * element + 255) / 256 * 256 : 0;
  plan.scratchBytes = plan.productOffset + (plan.separateOutput ? size_t(p.m) * p.n * element : 0);
  return plan;
}

void linear(const LinearParams& p, const LinearPlan& plan, void* scratch, cudaStream_t stream) {
  if (p.wType == DType::F32) throw Error("linear: f32 weights on CUDA: convert to bf16/f16 when loading");
  if (p.wType != DType::BF16 && p.wType != DType::F16)
    throw Error(std::string("linear: weights must be bf16 or f16 on CUDA, not ") + dtypeName(p.wType));
  if (p.xType != p.wType)
    throw Error(std::string("linear: on CUDA the activations must have the weights' dtype (") + dtypeName(p.wType) +
                "), not " + dtypeName(p.xType));
  if (p.m < 0 || p.n < 0 || p.k < 0) throw Error("linear: m, n and k must be >= 0");
  if (p.m == 0 || p.n == 0) return;
  if (p.x == nullptr && p.k > 0) throw Error("linear: x is null");
  if (p.w == nullptr && p.k > 0) throw Error("linear: w is null");
  if (p.y == nullptr) throw Error("linear: y is null");
  if (p.input == LinearInput::RmsNorm && p.norm == nullptr && p.k > 0) throw Error("linear: norm is null");
  if (p.output == LinearOutput::SwiGlu && (p.accumulate || p.n % 2 != 0))
    throw Error("linear: a SwiGLU output needs an even number of weight rows ([gate | up]) and no accumulate");
  if (p.output == LinearOutput::RopeAppendKv &&
      (p.accumulate || p.m != p.rope.tokens || int64_t(p.n) != int64_t(p.rope.hq + 2 * p.rope.hkv) * p.rope.d))
    throw Error("linear: a RoPE + append output needs the q|k|v heads' rows, a row per token and no accumulate");
  if (plan.scratchBytes > 0 && scratch == nullptr)
    throw Error("linear: the input or output transform needs the plan's scratchBytes of scratch");
  LinearParams q = p;
  if (plan.separateTransform) {
    if (p.input == LinearInput::RmsNorm) {
      RmsNormParams norm;
      norm.xType = p.xType, norm.wType = p.wType;
      norm.x = p.x, norm.weight = p.norm, norm.y = scratch;
      norm.rows = p.m, norm.dim = p.k, norm.eps = p.eps;
      rmsNorm(norm, stream);
    } else {
      SwiGluParams glu;
      glu.dtype = p.xType;
      glu.x = p.x, glu.y = scratch;
      glu.rows = p.m, glu.inner = p.k;
      swiGlu(glu, stream);
    }
    q.x = scratch;
  }
  if (plan.separateTransform || p.k == 0) q.input = LinearInput::Plain, q.norm = nullptr;
  if (plan.separateOutput)
    q.output = LinearOutput::Plain, q.y = static_cast<unsigned char*>(scratch) + plan.productOffset;
  if (p.xType == DType::BF16) {
    runLinear<bf16>(q, plan, stream);
  } else {
    runLinear<f16>(q, plan, stream);
  }
  if (plan.separateOutput && p.output == LinearOutput::SwiGlu) {
    SwiGluParams glu;
    glu.dtype = p.xType;
    glu.x = q.y, glu.y = p.y;
    glu.rows = p.m, glu.inner = p.n / 2;
    swiGlu(glu, stream);
  } else if (plan.separateOutput) {
    RopeAppendKvParams rope = p.rope;
    rope.qkv = q.y;
    ropeAppendKv(rope, stream);
  }
}

}  // namespace lt::cuda
