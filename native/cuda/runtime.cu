// CUDA backend runtime: device discovery, one stream per device, and device memory from a
// stream-ordered pool (cudaMallocAsync on a pool whose release threshold keeps freed blocks),
// so steady-state allocation never reaches the driver. Host code only; kernels live in the
// other .cu files. cudart is linked statically, so on a machine without a driver this file's
// availability() reports the driver error instead of the addon failing to load.
//
// Graph capture (cuda_backend.h): cudaStreamBeginCapture in relaxed mode on the device's
// stream. During a capture nothing may be allocated from or copied on that stream — a
// stream-ordered allocation would become a graph memory node the graph does not own, and a
// copy from pageable memory or to the host cannot be captured — so those throw, frees wait
// for the end of the capture, and calls take their scratch from the capture (cudaMalloc,
// owned by the graph and freed with it).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/error.h"
#include "cuda_backend.h"
#include "step_timeline.cuh"

namespace lt::cuda {

// An instantiated graph, the device it replays on and the scratch memory its calls use.
struct Graph {
  int device = 0;
  cudaGraphExec_t exec = nullptr;
  std::vector<void*> scratch;
};

namespace {

std::string mib(size_t bytes) {
  return std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB";
}

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear a non-sticky error so later calls work
    throw Error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(err));
  }
}

struct DeviceState {
  cudaStream_t stream = nullptr;
  int multiprocessors = 0;
  bool capturing = false;
  std::vector<void*> deferredFrees;    // freed while capturing; given back at the end
  std::vector<Graph*> deferredGraphs;  // destroyed while capturing; likewise
  std::vector<void*> captureScratch;   // every buffer handed out during this capture
  size_t captureScratchBytes = 0;      // size of the last (largest) one
  // Set when an allocation ran out of memory: the pool may then hold memory the tensors that
  // caused it gave back, which cudaMalloc (graph scratch, the cuBLAS workspace) cannot use
  // until the pool returns it to the driver, before the next capture.
  bool releasePending = false;
};

std::mutex stateMutex;
std::vector<DeviceState>& states() {
  static std::vector<DeviceState> s;
  return s;
}

// CUDART_VERSION is the runtime linked in (13000 for 13.0). Every 13.x runtime runs on any
// driver of the r580 branch or newer (CUDA minor version compatibility), so 580 is the floor.
constexpr int kDriverFloor = 580;

std::string cudaVersionText(int version) {
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

// cudaErrorInsufficientDriver covers both a missing driver (libcuda.so.1 does not load; the
// driver version reads 0) and one older than the runtime; each gets its own remedy.
std::string unavailableReason(cudaError_t err) {
  int driver = 0;
  cudaDriverGetVersion(&driver);
  const std::string runtime = cudaVersionText(CUDART_VERSION);
  if (err == cudaErrorInsufficientDriver && driver == 0)
    return "no NVIDIA driver was found (libcuda.so.1 did not load), so everything runs on the CPU; to use a GPU, "
           "install the NVIDIA driver (" +
           std::to_string(kDriverFloor) + " or newer for this build, which uses CUDA " + runtime +
           ") and check that `nvidia-smi` lists the GPU";
  if (err == cudaErrorInsufficientDriver)
    return "the NVIDIA driver is too old: it supports CUDA " + cudaVersionText(driver) + ", and this build uses CUDA " +
           runtime + ", which needs driver " + std::to_string(kDriverFloor) +
           " or newer; update the NVIDIA driver, or build lighttransfer from source with the CUDA toolkit your driver "
           "supports (`LIGHTTRANSFER_BUILD_FROM_SOURCE=1 npm rebuild lighttransfer`)";
  return std::string("the CUDA runtime found no usable GPU (") + cudaGetErrorString(err) +
         "); check that an NVIDIA driver is installed and `nvidia-smi` lists a GPU";
}

const Availability& probe() {
  static const Availability result = [] {
    Availability a;
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
      cudaGetLastError();
      a.reason = unavailableReason(err);
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
    check(cudaDeviceGetAttribute(&st.multiprocessors, cudaDevAttrMultiProcessorCount, device),
          "cudaDeviceGetAttribute");
  }
  return st;
}

void refuseWhileCapturing(const DeviceState& st, int device, const char* what) {
  if (st.capturing)
    throw Error(std::string(what) + " on cuda:" + std::to_string(device) +
                " while a CUDA graph is being captured there: allocate and copy before the capture");
}

// Gives back what was freed during a capture, once the stream records again.
void flushDeferred(DeviceState& st) noexcept {
  std::vector<void*> frees;
  std::vector<Graph*> graphs;
  {
    std::lock_guard<std::mutex> lock(stateMutex);
    frees.swap(st.deferredFrees);
    graphs.swap(st.deferredGraphs);
  }
  for (void* p : frees) cudaFreeAsync(p, st.stream);
  for (Graph* g : graphs) destroyGraph(g);
}

}  // namespace

Availability availability() {
  return probe();
}

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

void releaseIdleMemory(int device) noexcept {
  DeviceState* st = nullptr;
  try {
    st = &state(device);
  } catch (...) {
    return;
  }
  {
    std::lock_guard<std::mutex> lock(stateMutex);
    if (st->capturing) return;
    st->releasePending = false;
  }
  cudaMemPool_t pool;
  // Blocks freed on the stream are idle only once the stream has passed their frees.
  if (cudaSetDevice(device) != cudaSuccess || cudaStreamSynchronize(st->stream) != cudaSuccess ||
      cudaDeviceGetDefaultMemPool(&pool, device) != cudaSuccess || cudaMemPoolTrimTo(pool, 0) != cudaSuccess)
    cudaGetLastError();
}

void* alloc(int device, size_t bytes) {
  DeviceState& st = state(device);
  refuseWhileCapturing(st, device, "device memory cannot be allocated");
  check(cudaSetDevice(device), "cudaSetDevice");
  void* ptr = nullptr;
  cudaError_t err = cudaMallocAsync(&ptr, bytes == 0 ? 1 : bytes, st.stream);
  if (err == cudaErrorMemoryAllocation) {
    // Frees still queued on the stream may be what is missing: wait for them, and try once more.
    cudaGetLastError();
    releaseIdleMemory(device);
    err = cudaMallocAsync(&ptr, bytes == 0 ? 1 : bytes, st.stream);
  }
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    // A failed request can leave the pool holding memory it mapped while trying; other
    // processes on the card cannot have it until the pool hands it back.
    releaseIdleMemory(device);
    {
      std::lock_guard<std::mutex> lock(stateMutex);
      st.releasePending = true;
    }
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
  {
    std::lock_guard<std::mutex> lock(stateMutex);
    if (st.capturing) {
      st.deferredFrees.push_back(ptr);
      return;
    }
  }
  cudaSetDevice(device);
  cudaFreeAsync(ptr, st.stream);
}

void copy(void* dst, int dstDevice, const void* src, int srcDevice, size_t bytes) {
  if (bytes == 0) return;
  int device = dstDevice >= 0 ? dstDevice : srcDevice;
  DeviceState& st = state(device);
  refuseWhileCapturing(st, device, "memory cannot be copied");
  if (dstDevice >= 0 && srcDevice >= 0) refuseWhileCapturing(state(srcDevice), srcDevice, "memory cannot be copied");
  check(cudaSetDevice(device), "cudaSetDevice");
  cudaMemcpyKind kind =
      dstDevice >= 0 ? (srcDevice >= 0 ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice) : cudaMemcpyDeviceToHost;
  if (dstDevice >= 0 && srcDevice >= 0 && dstDevice != srcDevice) {
    check(cudaMemcpyPeerAsync(dst, dstDevice, src, srcDevice, bytes, st.stream), "cudaMemcpyPeerAsync");
  } else {
    check(cudaMemcpyAsync(dst, src, bytes, kind, st.stream), "cudaMemcpyAsync");
  }
  // Uploads from pageable memory are staged before cudaMemcpyAsync returns, and device copies
  // are ordered on the stream, so only a copy to the host has to wait.
  if (dstDevice < 0) check(cudaStreamSynchronize(st.stream), "cudaStreamSynchronize");
}

namespace {
// Pinned buffers are page-locked host memory: keep one per device, no larger than this.
constexpr size_t kMaxStagingBytes = size_t(256) << 20;
std::mutex stagingMutex;  // one read at a time uses the staging buffers
std::vector<std::pair<void*, size_t>>& stagingBuffers() {
  static std::vector<std::pair<void*, size_t>> buffers;
  return buffers;
}
}  // namespace

void readStaged(int device, const void* src, size_t bytes, const std::function<void(const void* host)>& consume) {
  DeviceState& st = state(device);
  refuseWhileCapturing(st, device, "memory cannot be copied");
  if (bytes == 0) {
    consume(nullptr);
    return;
  }
  std::lock_guard<std::mutex> lock(stagingMutex);
  auto& buffers = stagingBuffers();
  if (buffers.size() <= size_t(device)) buffers.resize(size_t(device) + 1, {nullptr, 0});
  auto& [buffer, capacity] = buffers[size_t(device)];
  if (capacity < bytes && bytes <= kMaxStagingBytes) {
    if (buffer) cudaFreeHost(buffer);
    buffer = nullptr;
    capacity = 0;
    // Powers of two from 1 MiB, so a growing read size rarely re-pins.
    size_t want = size_t(1) << 20;
    while (want < bytes) want <<= 1;
    check(cudaSetDevice(device), "cudaSetDevice");
    if (cudaMallocHost(&buffer, want) == cudaSuccess) {
      capacity = want;
    } else {
      cudaGetLastError();
      buffer = nullptr;
    }
  }
  if (capacity < bytes) {  // too large to pin, or pinning failed: the pageable path
    std::vector<uint8_t> host(bytes);
    copy(host.data(), -1, src, device, bytes);
    consume(host.data());
    return;
  }
  check(cudaSetDevice(device), "cudaSetDevice");
  check(cudaMemcpyAsync(buffer, src, bytes, cudaMemcpyDeviceToHost, st.stream), "cudaMemcpyAsync");
  check(cudaStreamSynchronize(st.stream), "cudaStreamSynchronize");
  consume(buffer);
}

namespace {
// A pending read's pinned buffer and the event recorded behind its copy, kept per device for the
// next read once the read is finished or dropped.
struct ReadSlot {
  void* buffer = nullptr;
  cudaEvent_t copied = nullptr;
};
std::mutex readSlotsMutex;
std::vector<std::vector<ReadSlot>>& freeReadSlots() {
  static std::vector<std::vector<ReadSlot>> slots;
  return slots;
}
void giveBackSlot(int device, ReadSlot slot) {
  std::lock_guard<std::mutex> lock(readSlotsMutex);
  freeReadSlots()[size_t(device)].push_back(slot);
}
}  // namespace

struct PendingRead {
  int device = 0;
  ReadSlot slot;
};

PendingRead* startRead(int device, const void* src, size_t bytes) {
  DeviceState& st = state(device);
  refuseWhileCapturing(st, device, "memory cannot be copied");
  if (bytes > kMaxPendingReadBytes)
    throw Error("a pending read takes at most " + std::to_string(kMaxPendingReadBytes) + " bytes, not " +
                std::to_string(bytes) + "; read larger tensors with a waiting copy");
  check(cudaSetDevice(device), "cudaSetDevice");
  ReadSlot slot;
  {
    std::lock_guard<std::mutex> lock(readSlotsMutex);
    auto& all = freeReadSlots();
    if (all.size() <= size_t(device)) all.resize(size_t(device) + 1);
    if (!all[size_t(device)].empty()) {
      slot = all[size_t(device)].back();
      all[size_t(device)].pop_back();
    }
  }
  if (slot.buffer == nullptr) {
    check(cudaMallocHost(&slot.buffer, kMaxPendingReadBytes), "cudaMallocHost (pinned memory for a pending read)");
    if (cudaEventCreateWithFlags(&slot.copied, cudaEventDisableTiming) != cudaSuccess) {
      cudaFreeHost(slot.buffer);
      check(cudaGetLastError(), "cudaEventCreate");
    }
  }
  try {
    if (bytes > 0)
      check(cudaMemcpyAsync(slot.buffer, src, bytes, cudaMemcpyDeviceToHost, st.stream), "cudaMemcpyAsync");
    check(cudaEventRecord(slot.copied, st.stream), "cudaEventRecord");
  } catch (...) {
    giveBackSlot(device, slot);
    throw;
  }
  return new PendingRead{device, slot};
}

void finishRead(PendingRead* read, const std::function<void(const void* host)>& consume) {
  check(cudaEventSynchronize(read->slot.copied), "cudaEventSynchronize (a kernel on this device failed)");
  consume(read->slot.buffer);
}

void dropRead(PendingRead* read) noexcept {
  if (read == nullptr) return;
  giveBackSlot(read->device, read->slot);
  delete read;
}

namespace {
// A file's bytes reach the device a chunk at a time through two pinned halves, kept per device.
constexpr size_t kUploadChunkBytes = size_t(32) << 20;
struct UploadBuffers {
  void* half[2] = {nullptr, nullptr};
  cudaEvent_t copied[2] = {nullptr, nullptr};  // each half's last copy to the device
};
// Never destroyed: a pool thread may still be reading a file when the process exits.
std::mutex& uploadMutex() {  // one file read at a time uses the halves
  static auto* mutex = new std::mutex();
  return *mutex;
}
std::vector<UploadBuffers>& uploadBuffers() {
  static auto* buffers = new std::vector<UploadBuffers>();
  return *buffers;
}

// Pins the halves and makes their events, or leaves none of it (then the next read tries again).
void pinUploadBuffers(UploadBuffers& u) {
  void* pinned = nullptr;
  if (cudaMallocHost(&pinned, 2 * kUploadChunkBytes) != cudaSuccess) {
    cudaGetLastError();
    return;
  }
  cudaEvent_t events[2] = {nullptr, nullptr};
  for (cudaEvent_t& e : events)
    if (cudaEventCreateWithFlags(&e, cudaEventDisableTiming) != cudaSuccess) {
      cudaGetLastError();
      for (cudaEvent_t made : events)
        if (made != nullptr) cudaEventDestroy(made);
      cudaFreeHost(pinned);
      return;
    }
  u.half[0] = pinned;
  u.half[1] = static_cast<uint8_t*>(pinned) + kUploadChunkBytes;
  u.copied[0] = events[0];
  u.copied[1] = events[1];
}
}  // namespace

void readFile(int device, void* dst, int fd, uint64_t position, size_t bytes) {
  DeviceState& st = state(device);
  refuseWhileCapturing(st, device, "a file cannot be read into device memory");
  if (bytes == 0) return;
  std::lock_guard<std::mutex> lock(uploadMutex());
  check(cudaSetDevice(device), "cudaSetDevice");
  auto& all = uploadBuffers();
  if (all.size() <= size_t(device)) all.resize(size_t(device) + 1);
  UploadBuffers& u = all[size_t(device)];
  if (u.half[0] == nullptr) pinUploadBuffers(u);
  auto* out = static_cast<uint8_t*>(dst);
  try {
    if (u.half[0] == nullptr) {  // nothing could be pinned: pageable chunks, each staged by the copy
      std::vector<uint8_t> host(std::min(bytes, kUploadChunkBytes));
      for (size_t done = 0; done < bytes;) {
        const size_t n = std::min(kUploadChunkBytes, bytes - done);
        readFileFully(fd, host.data(), n, position + done);
        copy(out + done, device, host.data(), -1, n);
        done += n;
      }
    } else {
      int i = 0;
      for (size_t done = 0; done < bytes; i ^= 1) {
        const size_t n = std::min(kUploadChunkBytes, bytes - done);
        check(cudaEventSynchronize(u.copied[i]), "cudaEventSynchronize");  // this half is free again
        readFileFully(fd, u.half[i], n, position + done);
        check(cudaMemcpyAsync(out + done, u.half[i], n, cudaMemcpyHostToDevice, st.stream), "cudaMemcpyAsync");
        check(cudaEventRecord(u.copied[i], st.stream), "cudaEventRecord");
        done += n;
      }
    }
  } catch (...) {
    // No copy may still be writing into the caller's memory once the error reaches it.
    cudaStreamSynchronize(st.stream);
    throw;
  }
  check(cudaStreamSynchronize(st.stream), "cudaStreamSynchronize");
}

void synchronize(int device) {
  DeviceState& st = state(device);
  refuseWhileCapturing(st, device, "the stream cannot be waited on");
  check(cudaSetDevice(device), "cudaSetDevice");
  check(cudaStreamSynchronize(st.stream), "cudaStreamSynchronize (a kernel on this device failed)");
}

void* stream(int device) {
  return state(device).stream;
}

int multiprocessors(int device) {
  return state(device).multiprocessors;
}

void beginCapture(int device) {
  DeviceState& st = state(device);
  if (st.capturing) throw Error("cuda:" + std::to_string(device) + " is already being captured into a CUDA graph");
  bool release;
  {
    std::lock_guard<std::mutex> lock(stateMutex);
    release = st.releasePending;
  }
  if (release) releaseIdleMemory(device);  // the capture's scratch comes from cudaMalloc
  check(cudaSetDevice(device), "cudaSetDevice");
  // Relaxed: calls made while recording may still query and configure kernels (occupancy,
  // shared-memory limits) and take scratch memory with cudaMalloc.
  check(cudaStreamBeginCapture(st.stream, cudaStreamCaptureModeRelaxed), "cudaStreamBeginCapture");
  std::lock_guard<std::mutex> lock(stateMutex);
  st.capturing = true;
}

bool capturing(int device) {
  return state(device).capturing;
}

void* captureScratch(int device, size_t bytes) {
  DeviceState& st = state(device);
  if (!st.capturing) throw Error("captureScratch: cuda:" + std::to_string(device) + " is not being captured");
  if (!st.captureScratch.empty() && bytes <= st.captureScratchBytes) return st.captureScratch.back();
  check(cudaSetDevice(device), "cudaSetDevice");
  void* ptr = nullptr;
  const cudaError_t err = cudaMalloc(&ptr, bytes == 0 ? 1 : bytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    throw Error("CUDA out of memory on cuda:" + std::to_string(device) + ": a captured call asked for " + mib(bytes) +
                " of scratch memory");
  }
  check(err, "cudaMalloc (graph scratch)");
  st.captureScratch.push_back(ptr);
  st.captureScratchBytes = bytes;
  return ptr;
}

namespace {
// Stops recording on the device's stream; returns the recorded graph (or null) and the error.
cudaError_t stopCapture(DeviceState& st, cudaGraph_t* graph) noexcept {
  const cudaError_t err = cudaStreamEndCapture(st.stream, graph);
  {
    std::lock_guard<std::mutex> lock(stateMutex);
    st.capturing = false;
  }
  flushDeferred(st);
  return err;
}

void freeScratch(std::vector<void*>& scratch) noexcept {
  for (void* p : scratch) cudaFree(p);
  scratch.clear();
}
}  // namespace

Graph* endCapture(int device) {
  DeviceState& st = state(device);
  if (!st.capturing) throw Error("endCapture: cuda:" + std::to_string(device) + " is not being captured");
  cudaSetDevice(device);
  cudaGraph_t graph = nullptr;
  cudaError_t err = stopCapture(st, &graph);
  std::vector<void*> scratch;
  scratch.swap(st.captureScratch);
  st.captureScratchBytes = 0;
  cudaGraphExec_t exec = nullptr;
  if (err == cudaSuccess && graph != nullptr) err = cudaGraphInstantiate(&exec, graph, 0);
  if (graph != nullptr) cudaGraphDestroy(graph);
  if (err != cudaSuccess || exec == nullptr) {
    cudaGetLastError();
    freeScratch(scratch);
    throw Error(std::string("CUDA graph capture on cuda:") + std::to_string(device) +
                " failed: " + cudaGetErrorString(err == cudaSuccess ? cudaErrorStreamCaptureInvalidated : err));
  }
  return new Graph{device, exec, std::move(scratch)};
}

void abortCapture(int device) noexcept {
  try {
    DeviceState& st = state(device);
    if (!st.capturing) return;
    cudaSetDevice(device);
    cudaGraph_t graph = nullptr;
    stopCapture(st, &graph);
    if (graph != nullptr) cudaGraphDestroy(graph);
    cudaGetLastError();
    freeScratch(st.captureScratch);
    st.captureScratchBytes = 0;
  } catch (...) {
  }
}

void launchGraph(Graph* graph) {
  DeviceState& st = state(graph->device);
  refuseWhileCapturing(st, graph->device, "a graph cannot be launched");
  check(cudaSetDevice(graph->device), "cudaSetDevice");
  timelineBeforeGraphLaunch(st.stream);
  check(cudaGraphLaunch(graph->exec, st.stream), "cudaGraphLaunch");
  timelineAfterGraphLaunch(st.stream);
}

void destroyGraph(Graph* graph) noexcept {
  if (graph == nullptr) return;
  try {
    DeviceState& st = state(graph->device);
    {
      // cudaFree waits for the device, which a capture in progress does not allow.
      std::lock_guard<std::mutex> lock(stateMutex);
      if (st.capturing) {
        st.deferredGraphs.push_back(graph);
        return;
      }
    }
    cudaSetDevice(graph->device);
    // A replay may still be reading the scratch; a failed kernel was reported by an earlier wait.
    cudaStreamSynchronize(st.stream);
    cudaGetLastError();
    cudaGraphExecDestroy(graph->exec);
    freeScratch(graph->scratch);
  } catch (...) {
  }
  delete graph;
}

}  // namespace lt::cuda
