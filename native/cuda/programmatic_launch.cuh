// Programmatic dependent launch (sm_90+): a kernel launched with
// cudaLaunchAttributeProgrammaticStreamSerialization may start before the kernel ahead of it on
// the stream has finished, once every block of that one has allowed it (or exited). It must
// wait (waitForPrerequisiteGrids) before it reads anything the earlier kernel writes, or writes
// anything the earlier kernel reads; what no kernel writes (weights) it may read before. What the
// earlier kernel writes it reads past the read-only cache (__ldcg, cp.async.cg), never with __ldg:
// that cache is only kept coherent for data no kernel writes while this one runs, and with a
// graph replaying a chain of such kernels it returned stale rows (test/gpu/model.test.ts, the
// chain of fused linears). On older devices, and for kernels launched the ordinary way, both
// device calls are no-ops. CUDA graphs record the relation as a programmatic edge.
#pragma once
#include <cuda_runtime.h>

#include <atomic>
#include <string>
#include <utility>

#include "core/error.h"

namespace lt::cuda {

// Waits until the grids this one depends on have finished and their writes are visible.
__device__ __forceinline__ void waitForPrerequisiteGrids() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// Lets a dependent launched programmatically start once every block of this grid got here.
__device__ __forceinline__ void allowDependentGrids() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// Whether the current device can launch programmatic dependents (compute capability 9 or more),
// cached per device.
inline bool deviceHasProgrammaticLaunch() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cached[kMaxDevices];  // 0 unknown, 1 no, 2 yes
  int dev = 0;
  cudaError_t err = cudaGetDevice(&dev);
  if (err != cudaSuccess) throw Error(std::string("cudaGetDevice failed: ") + cudaGetErrorString(err));
  if (dev >= 0 && dev < kMaxDevices) {
    const int known = cached[dev].load(std::memory_order_relaxed);
    if (known) return known == 2;
  }
  int major = 0;
  err = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  if (err != cudaSuccess) throw Error(std::string("reading the compute capability failed: ") + cudaGetErrorString(err));
  if (dev >= 0 && dev < kMaxDevices) cached[dev].store(major >= 9 ? 2 : 1, std::memory_order_relaxed);
  return major >= 9;
}

// Launches `kernel` on `stream` as a programmatic dependent of the kernel before it where the
// device allows, the ordinary way elsewhere; a failed launch throws, naming `op` and `name`.
template <typename... Params, typename... Args>
void launchProgrammatic(const char* op, const char* name, void (*kernel)(Params...), dim3 grid, dim3 block,
                        size_t sharedBytes, cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = sharedBytes;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = deviceHasProgrammaticLaunch() ? 1 : 0;
  const cudaError_t err = cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    throw Error(std::string(op) + ": launch of " + name + " failed: " + cudaGetErrorString(err));
  }
}

}  // namespace lt::cuda
