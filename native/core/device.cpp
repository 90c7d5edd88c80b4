#include "device.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>

#include "cuda/cuda_backend.h"
#include "error.h"

namespace lt {

namespace {
constexpr size_t kCpuAlignment = 64;  // a cache line, and wide enough for any vector load
// Blocks this large are mapped from the OS and unmapped on free. From the heap, a freed block
// is a hole that the small allocations of live JS wrappers carve into, so the next tensor of
// the same size takes fresh memory: 10,000 create/dispose pairs of 400 KB tensors grew the
// process by 600 MB with no tensor alive.
constexpr size_t kMappedBytes = size_t(128) << 10;

[[noreturn]] void outOfHostMemory(size_t bytes) {
  throw Error("out of host memory: could not allocate " + std::to_string(bytes >> 20) +
              " MiB; free tensors you no longer need (tensor.dispose()) or use smaller shapes");
}
}  // namespace

void* deviceAlloc(const Device& device, size_t bytes) {
  if (device.isCpu()) {
    if (bytes >= kMappedBytes) {
      void* ptr = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (ptr == MAP_FAILED) outOfHostMemory(bytes);
      return ptr;
    }
    size_t rounded = (bytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
    void* ptr = std::aligned_alloc(kCpuAlignment, rounded == 0 ? kCpuAlignment : rounded);
    if (!ptr) outOfHostMemory(bytes);
    return ptr;
  }
  return cuda::alloc(device.index, bytes);
}

void deviceFree(const Device& device, void* ptr, size_t bytes) noexcept {
  if (device.isCpu() && bytes >= kMappedBytes) munmap(ptr, bytes);
  else if (device.isCpu()) std::free(ptr);
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
