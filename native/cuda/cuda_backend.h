// The CUDA backend as the rest of the addon sees it. It compiles in every build: without
// CUDA (or without a usable driver) availability() says why, and every other call throws
// lt::Error with that reason, so callers need no #ifdefs.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace lt::cuda {

struct Availability {
  bool available = false;
  std::string reason;  // why not, when unavailable
  int deviceCount = 0;
};

struct DeviceInfo {
  int index = 0;
  std::string name;
  size_t totalMemory = 0;
  size_t freeMemory = 0;
  int computeMajor = 0, computeMinor = 0;
  int multiprocessors = 0;
};

Availability availability();
std::vector<DeviceInfo> listDevices();

// Device memory comes from a stream-ordered pool that keeps freed blocks for reuse, so steady
// state allocates nothing from the driver. Out of memory throws lt::Error with the request
// and the free memory.
void* alloc(int device, size_t bytes);
void free(int device, void* ptr) noexcept;
// Host<->device and device<->device copies (device < 0 means host memory), ordered on the
// device's stream; a copy to the host returns when the data is there.
void copy(void* dst, int dstDevice, const void* src, int srcDevice, size_t bytes);
// Waits for all work queued on the device's stream; throws lt::Error on a kernel fault.
void synchronize(int device);
// The device's stream (a cudaStream_t) and its multiprocessor count, for kernel launches.
void* stream(int device);
int multiprocessors(int device);
// Makes `device` current on the calling thread (CUDA's current device is per thread).
void setCurrent(int device);

}  // namespace lt::cuda
