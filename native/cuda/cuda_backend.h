// The CUDA backend as the rest of the addon sees it. It compiles in every build: without
// CUDA (or without a usable driver) availability() says why, and every other call throws
// lt::Error with that reason, so callers need no #ifdefs.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
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
// Waits for the device's stream and returns the pool's idle memory to the driver, so that
// cudaMalloc can have it; a no-op while the device is being captured. alloc() does this before
// it reports out of memory, and the next capture after an out-of-memory error does it too.
void releaseIdleMemory(int device) noexcept;
// Host<->device and device<->device copies (device < 0 means host memory), ordered on the
// device's stream; a copy to the host returns when the data is there.
void copy(void* dst, int dstDevice, const void* src, int srcDevice, size_t bytes);
// Reads `bytes` of device memory through a pinned staging buffer kept per device (a DMA at
// full link speed, with no page faults during the transfer; the pageable path of copy() for
// sizes it cannot pin), waiting for the stream first, and hands the staged bytes to `consume`
// on this thread before the buffer is reused.
void readStaged(int device, const void* src, size_t bytes, const std::function<void(const void* host)>& consume);
// A read of device memory that does not wait: startRead queues a copy of `bytes` (at most
// kMaxPendingReadBytes) into pinned host memory on the device's stream, behind everything queued
// so far, and returns at once; finishRead waits for that copy alone (not for work queued after
// it) and hands the bytes to `consume`. Every started read must be finished or dropped; dropRead
// gives its pinned buffer back without waiting (a later read's copy into it is queued behind
// this one's on the same stream, and waits for its own).
struct PendingRead;
constexpr size_t kMaxPendingReadBytes = size_t(64) << 10;
PendingRead* startRead(int device, const void* src, size_t bytes);
void finishRead(PendingRead* read, const std::function<void(const void* host)>& consume);
void dropRead(PendingRead* read) noexcept;
// Reads `bytes` of the open file `fd` from `position` into device memory at `dst`, a chunk at a
// time into one of two pinned buffers kept per device while the other's copy to the device runs
// (no pageable staging and no page faults; the pageable path where memory cannot be pinned),
// and returns when the bytes are on the device. Throws lt::Error as readFileFully does.
void readFile(int device, void* dst, int fd, uint64_t position, size_t bytes);
// Waits for all work queued on the device's stream; throws lt::Error on a kernel fault.
void synchronize(int device);
// The device's stream (a cudaStream_t) and its multiprocessor count, for kernel launches.
void* stream(int device);
int multiprocessors(int device);
// Makes `device` current on the calling thread (CUDA's current device is per thread).
void setCurrent(int device);

// CUDA graphs of a device's stream: work queued between beginCapture and endCapture is
// recorded, not run, and the instantiated graph replays it with launchGraph. While a device
// is being captured, alloc(), copy() and synchronize() on it throw lt::Error (they would break
// the capture or be recorded), free() is deferred to the end of the capture, and a call that
// needs scratch memory takes captureScratch() instead. Captures happen on the JS thread only.
struct Graph;
void beginCapture(int device);
bool capturing(int device);
// Scratch memory for a call being captured. The graph owns it; its calls run one after
// another on one stream, so they share one buffer (grown when a call needs more).
void* captureScratch(int device, size_t bytes);
// Ends the capture and instantiates the graph; throws lt::Error (the capture is discarded)
// when a recorded call broke it.
Graph* endCapture(int device);
// Ends a capture and throws its work away; for error paths.
void abortCapture(int device) noexcept;
// Enqueues one replay of the graph on its device's stream.
void launchGraph(Graph* graph);
// Waits for the graph's last replay, then frees it and its scratch.
void destroyGraph(Graph* graph) noexcept;

}  // namespace lt::cuda
