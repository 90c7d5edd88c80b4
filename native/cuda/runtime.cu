// CUDA backend runtime: device discovery, one stream per device, and device memory from a
// stream-ordered pool (cudaMallocAsync on a pool whose release threshold keeps freed blocks),
// so steady-state allocation never reaches the driver. Host code only; kernels live in the
// other .cu files. cudart is linked statically, so on a machine without a driver this file's
// availability() reports the driver error instead of the addon failing to load.
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "core/error.h"
#include "cuda_backend.h"

namespace lt::cuda {
namespace {

std::string mib(size_t bytes) { return std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB"; }

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear a non-sticky error so later calls work
    throw Error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(err));
  }
}

struct DeviceState {
  cudaStream_t stream = nullptr;
  int multiprocessors = 0;
};

std::mutex stateMutex;
std::vector<DeviceState>& states() {
  static std::vector<DeviceState> s;
  return s;
}

const Availability& probe() {
  static const Availability result = [] {
    Availability a;
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
      cudaGetLastError();
      a.reason = std::string("the CUDA runtime found no usable GPU (") + cudaGetErrorString(err) +
                 "); check that an NVIDIA driver is installed and `nvidia-smi` lists a GPU";
      return a;
    }
    if (count == 0) {
      a.reason = "no CUDA device is visible (check CUDA_VISIBLE_DEVICES and `nvidia-smi`)";
      return a;
    }
    a.available = true;
    a.deviceCount = count;
    return a;
  }();
  return result;
}

DeviceState& state(int device) {
  const Availability& a = probe();
  if (!a.available) throw Error("CUDA is not available: " + a.reason);
  if (device < 0 || device >= a.deviceCount)
    throw Error("cuda:" + std::to_string(device) + " does not exist: this machine has " +
                std::to_string(a.deviceCount) + " CUDA device(s), cuda:0 to cuda:" + std::to_string(a.deviceCount - 1));
  std::lock_guard<std::mutex> lock(stateMutex);
  auto& s = states();
  if (s.empty()) s.resize(a.deviceCount);
  DeviceState& st = s[device];
  if (!st.stream) {
    check(cudaSetDevice(device), "cudaSetDevice");
    cudaMemPool_t pool;
    check(cudaDeviceGetDefaultMemPool(&pool, device), "cudaDeviceGetDefaultMemPool");
    uint64_t keepAll = UINT64_MAX;
    check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keepAll), "cudaMemPoolSetAttribute");
    check(cudaStreamCreateWithFlags(&st.stream, cudaStreamNonBlocking), "cudaStreamCreate");
    check(cudaDeviceGetAttribute(&st.multiprocessors, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
  }
  return st;
}

}  // namespace

Availability availability() { return probe(); }

std::vector<DeviceInfo> listDevices() {
  std::vector<DeviceInfo> out;
  const Availability& a = probe();
  for (int i = 0; i < a.deviceCount; i++) {
    cudaDeviceProp prop;
    check(cudaGetDeviceProperties(&prop, i), "cudaGetDeviceProperties");
    DeviceInfo info;
    info.index = i;
    info.name = prop.name;
    info.totalMemory = prop.totalGlobalMem;
    info.computeMajor = prop.major;
    info.computeMinor = prop.minor;
    info.multiprocessors = prop.multiProcessorCount;
    check(cudaSetDevice(i), "cudaSetDevice");
    size_t freeBytes = 0, totalBytes = 0;
    check(cudaMemGetInfo(&freeBytes, &totalBytes), "cudaMemGetInfo");
    info.freeMemory = freeBytes;
    out.push_back(info);
  }
  return out;
}

void setCurrent(int device) {
  state(device);
  check(cudaSetDevice(device), "cudaSetDevice");
}

void* alloc(int device, size_t bytes) {
  DeviceState& st = state(device);
  check(cudaSetDevice(device), "cudaSetDevice");
  void* ptr = nullptr;
  cudaError_t err = cudaMallocAsync(&ptr, bytes == 0 ? 1 : bytes, st.stream);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t freeBytes = 0, totalBytes = 0;
    cudaMemGetInfo(&freeBytes, &totalBytes);
    throw Error("CUDA out of memory on cuda:" + std::to_string(device) + ": asked for " + mib(bytes) + ", " +
                mib(freeBytes) + " free of " + mib(totalBytes) +
                ". Dispose tensors and models you no longer need, or use a smaller batch or context.");
  }
  check(err, "cudaMallocAsync");
  return ptr;
}

void free(int device, void* ptr) noexcept {
  if (!ptr) return;
  DeviceState& st = state(device);
  cudaSetDevice(device);
  cudaFreeAsync(ptr, st.stream);
}

void copy(void* dst, int dstDevice, const void* src, int srcDevice, size_t bytes) {
  if (bytes == 0) return;
  int device = dstDevice >= 0 ? dstDevice : srcDevice;
  DeviceState& st = state(device);
  check(cudaSetDevice(device), "cudaSetDevice");
  cudaMemcpyKind kind = dstDevice >= 0 ? (srcDevice >= 0 ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                                       : cudaMemcpyDeviceToHost;
  if (dstDevice >= 0 && srcDevice >= 0 && dstDevice != srcDevice) {
    check(cudaMemcpyPeerAsync(dst, dstDevice, src, srcDevice, bytes, st.stream), "cudaMemcpyPeerAsync");
  } else {
    check(cudaMemcpyAsync(dst, src, bytes, kind, st.stream), "cudaMemcpyAsync");
  }
  // Uploads from pageable memory are staged before cudaMemcpyAsync returns, and device copies
  // are ordered on the stream, so only a copy to the host has to wait.
  if (dstDevice < 0) check(cudaStreamSynchronize(st.stream), "cudaStreamSynchronize");
}

void synchronize(int device) {
  DeviceState& st = state(device);
  check(cudaSetDevice(device), "cudaSetDevice");
  check(cudaStreamSynchronize(st.stream), "cudaStreamSynchronize (a kernel on this device failed)");
}

void* stream(int device) { return state(device).stream; }

int multiprocessors(int device) { return state(device).multiprocessors; }

}  // namespace lt::cuda
