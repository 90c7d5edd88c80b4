#include "device.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <iterator>
#include <mutex>
#include <new>

#include "error.h"

namespace lt {

namespace {
// Host tensor memory never comes straight from the general heap. There, a freed block is a
// hole that the small allocations of JS wrappers awaiting finalization carve into, so the next
// tensor of the same size takes fresh memory: 10,000 create/dispose pairs of 100-400 KB
// tensors grew the process by 0.5-3.8 GB with no tensor alive. Instead, blocks from 64 KiB up
// are mapped from the OS; smaller ones come in power-of-two classes whose freed blocks wait on a
// free list for the next tensor of their class (up to kCachedBytes). Freed mapped blocks too wait
// for the next tensor of their exact size (up to kMappedCachedBytes in all, the oldest unmapped
// first): a prefill allocates the same shapes layer after layer, and a fresh mapping costs a page
// fault for every page the kernel then writes (bench/README.md, the CPU kernels).
constexpr size_t kCpuAlignment = 64;  // a cache line, and wide enough for any vector load
constexpr size_t kMappedBytes = size_t(64) << 10;
constexpr size_t kCachedBytes = size_t(32) << 20;
constexpr size_t kMappedCachedBytes = size_t(256) << 20;
constexpr int kClasses = 11;  // 64 B, 128 B, ..., 64 KiB

[[noreturn]] void outOfHostMemory(size_t bytes) {
  throw Error("out of host memory: could not allocate " + std::to_string(bytes >> 20) +
              " MiB; free tensors you no longer need (tensor.dispose()) or use smaller shapes");
}

int classOf(size_t bytes) {
  int c = 0;
  while ((kCpuAlignment << c) < bytes) c++;
  return c;
}

// Each class's free list is threaded through the freed blocks themselves (every block holds
// at least a pointer), so freeing never allocates.
class SmallBlocks {
 public:
  void* take(size_t bytes) {
    const int c = classOf(bytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (FreeBlock* block = free_[c]) {
        free_[c] = block->next;
        cached_ -= kCpuAlignment << c;
        return block;
      }
    }
    void* ptr = std::aligned_alloc(kCpuAlignment, kCpuAlignment << c);
    if (!ptr) outOfHostMemory(bytes);
    return ptr;
  }
  void give(void* ptr, size_t bytes) noexcept {
    const int c = classOf(bytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_ + (kCpuAlignment << c) <= kCachedBytes) {
        free_[c] = new (ptr) FreeBlock{free_[c]};
        cached_ += kCpuAlignment << c;
        return;
      }
    }
    std::free(ptr);
  }

 private:
  struct FreeBlock {
    FreeBlock* next;
  };
  std::mutex mutex_;
  FreeBlock* free_[kClasses] = {};
  size_t cached_ = 0;
};

class MappedBlocks {
 public:
  void* take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto it = blocks_.rbegin(); it != blocks_.rend(); ++it)
        if (it->bytes == bytes) {
          void* ptr = it->ptr;
          cached_ -= bytes;
          blocks_.erase(std::next(it).base());
          return ptr;
        }
    }
    void* ptr = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ptr == MAP_FAILED) outOfHostMemory(bytes);
    return ptr;
  }
  void give(void* ptr, size_t bytes) noexcept {
    if (bytes <= kMappedCachedBytes) {
      std::lock_guard<std::mutex> lock(mutex_);
      while (cached_ + bytes > kMappedCachedBytes) {
        munmap(blocks_.front().ptr, blocks_.front().bytes);
        cached_ -= blocks_.front().bytes;
        blocks_.pop_front();
      }
      try {
        blocks_.push_back({ptr, bytes});
        cached_ += bytes;
        return;
      } catch (const std::bad_alloc&) {  // no room to remember it: unmap it below
      }
    }
    munmap(ptr, bytes);
  }

 private:
  struct Block {
    void* ptr;
    size_t bytes;
  };
  std::mutex mutex_;
  std::deque<Block> blocks_;  // oldest first
  size_t cached_ = 0;
};

MappedBlocks& mappedBlocks() {
  static MappedBlocks* blocks = new MappedBlocks();  // never destroyed: tensors may be freed at exit
  return *blocks;
}

[[noreturn]] void noDeviceMemory() {
  throw Error("no CUDA memory backend is installed: the addon's module entry installs it (installDeviceMemory)");
}
void* uninstalledAlloc(int, size_t) {
  noDeviceMemory();
}
void uninstalledFree(int, void*) noexcept {}
void uninstalledCopy(void*, int, const void*, int, size_t) {
  noDeviceMemory();
}
void uninstalledReadFile(int, void*, int, uint64_t, size_t) {
  noDeviceMemory();
}
DeviceMemory cudaMemory{uninstalledAlloc, uninstalledFree, uninstalledCopy, uninstalledReadFile};

SmallBlocks& smallBlocks() {
  static SmallBlocks* blocks = new SmallBlocks();  // never destroyed: tensors may be freed at exit
  return *blocks;
}
}  // namespace

void installDeviceMemory(const DeviceMemory& memory) {
  cudaMemory = memory;
}

void* deviceAlloc(const Device& device, size_t bytes) {
  if (!device.isCpu()) return cudaMemory.alloc(device.index, bytes);
  if (bytes < kMappedBytes) return smallBlocks().take(bytes);
  return mappedBlocks().take(bytes);
}

void deviceFree(const Device& device, void* ptr, size_t bytes) noexcept {
  if (!device.isCpu())
    cudaMemory.free(device.index, ptr);
  else if (bytes < kMappedBytes)
    smallBlocks().give(ptr, bytes);
  else
    mappedBlocks().give(ptr, bytes);
}

void deviceCopy(void* dst, const Device& dstDevice, const void* src, const Device& srcDevice, size_t bytes) {
  if (dstDevice.isCpu() && srcDevice.isCpu()) {
    std::memmove(dst, src, bytes);  // a slice may be copied into an overlapping one
    return;
  }
  cudaMemory.copy(dst, dstDevice.isCpu() ? -1 : dstDevice.index, src, srcDevice.isCpu() ? -1 : srcDevice.index, bytes);
}

void deviceReadFile(void* dst, const Device& device, int fd, uint64_t position, size_t bytes) {
  if (device.isCpu())
    readFileFully(fd, dst, bytes, position);
  else
    cudaMemory.readFile(device.index, dst, fd, position, bytes);
}

static_assert(sizeof(off_t) >= 8, "pread must take offsets past 2 GiB: build with 64-bit file offsets");

void readFileFully(int fd, void* dst, size_t bytes, uint64_t position) {
  auto* out = static_cast<uint8_t*>(dst);
  for (size_t done = 0; done < bytes;) {
    // One pread moves at most ~2 GiB on Linux; a GiB at a time keeps every call well inside it.
    const size_t want = std::min(bytes - done, size_t(1) << 30);
    const ssize_t n = ::pread(fd, out + done, want, off_t(position + done));
    const int error = errno;
    if (n < 0 && error == EINTR) continue;
    if (n < 0)
      throw Error("reading the file at byte " + std::to_string(position + done) + " failed: " + std::strerror(error));
    if (n == 0)
      throw Error("the file ends at byte " + std::to_string(position + done) + ", " + std::to_string(bytes - done) +
                  " bytes before what was asked: it is truncated");
    done += size_t(n);
  }
}

}  // namespace lt
