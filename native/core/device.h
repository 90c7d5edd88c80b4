// Where a tensor's bytes live, and the backend-neutral memory operations on them.
// CPU memory is managed here; CUDA memory comes from the functions the CUDA backend installs
// (installDeviceMemory), so core includes no backend header.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace lt {

struct Device {
  enum class Kind : int32_t { CPU = 0, CUDA = 1 };
  Kind kind = Kind::CPU;
  int32_t index = 0;

  bool isCpu() const { return kind == Kind::CPU; }
  bool operator==(const Device& o) const { return kind == o.kind && (kind == Kind::CPU || index == o.index); }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string name() const { return kind == Kind::CPU ? "cpu" : "cuda:" + std::to_string(index); }
};

// Allocates `bytes` on `device`; throws lt::Error (with sizes and a remedy) on failure.
void* deviceAlloc(const Device& device, size_t bytes);
// Frees what deviceAlloc(device, bytes) returned.
void deviceFree(const Device& device, void* ptr, size_t bytes) noexcept;
// Copies between any two devices (host<->device, device<->device, host<->host).
void deviceCopy(void* dst, const Device& dstDevice, const void* src, const Device& srcDevice, size_t bytes);
// Reads `bytes` of the open file `fd` from byte `position` into `dst` on `device`: host memory
// is read into directly, device memory through the backend's pinned buffers. Throws lt::Error on
// a read error (with the system's reason) or a file that ends before `position + bytes`.
void deviceReadFile(void* dst, const Device& device, int fd, uint64_t position, size_t bytes);
// The host half of it: exactly `bytes` of `fd` from `position` into host memory at `dst`.
void readFileFully(int fd, void* dst, size_t bytes, uint64_t position);

// The memory operations of CUDA devices, by device index (-1 in copy: host memory); see
// native/cuda/cuda_backend.h for their contracts. The module entry installs the CUDA backend's
// before any tensor exists; until then CUDA alloc and copy throw.
struct DeviceMemory {
  void* (*alloc)(int device, size_t bytes);
  void (*free)(int device, void* ptr) noexcept;
  void (*copy)(void* dst, int dstDevice, const void* src, int srcDevice, size_t bytes);
  void (*readFile)(int device, void* dst, int fd, uint64_t position, size_t bytes);
};
void installDeviceMemory(const DeviceMemory& memory);

}  // namespace lt
