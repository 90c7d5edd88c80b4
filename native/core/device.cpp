#include "device.h"

#include <cstdlib>
#include <cstring>

#include "cuda/cuda_backend.h"
#include "error.h"

namespace lt {

namespace {
constexpr size_t kCpuAlignment = 64;  // a cache line, and wide enough for any vector load
}

void* deviceAlloc(const Device& device, size_t bytes) {
  if (device.isCpu()) {
    size_t rounded = (bytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
    void* ptr = std::aligned_alloc(kCpuAlignment, rounded == 0 ? kCpuAlignment : rounded);
    if (!ptr)
      throw Error("out of host memory: could not allocate " + std::to_string(bytes >> 20) +
                  " MiB; free tensors you no longer need (tensor.dispose()) or use smaller shapes");
    return ptr;
  }
  return cuda::alloc(device.index, bytes);
}

void deviceFree(const Device& device, void* ptr) noexcept {
  if (device.isCpu()) std::free(ptr);
  else cuda::free(device.index, ptr);
}

void deviceCopy(void* dst, const Device& dstDevice, const void* src, const Device& srcDevice, size_t bytes) {
  if (dstDevice.isCpu() && srcDevice.isCpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
  cuda::copy(dst, dstDevice.isCpu() ? -1 : dstDevice.index, src, srcDevice.isCpu() ? -1 : srcDevice.index, bytes);
}

}  // namespace lt
