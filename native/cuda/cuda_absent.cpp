// The CUDA backend of a build made without nvcc: it reports why CUDA is unavailable and
// every operation throws that reason, so the rest of the addon is the same in both builds.
#ifndef LT_WITH_CUDA
#include "core/error.h"
#include "cuda/cuda_backend.h"

namespace lt::cuda {

static const char* kReason =
    "this build of lighttransfer has no CUDA backend (it was built without nvcc, with LIGHTTRANSFER_CUDA=off, or by "
    "node-gyp); install CMake and the CUDA toolkit and rebuild with "
    "`LIGHTTRANSFER_BUILD_FROM_SOURCE=1 LIGHTTRANSFER_CUDA=on npm rebuild lighttransfer`";

Availability availability() {
  return Availability{false, kReason, 0};
}
std::vector<DeviceInfo> listDevices() {
  return {};
}
static void unavailable() {
  throw Error(std::string("CUDA is not available: ") + kReason);
}
void* alloc(int, size_t) {
  unavailable();
  return nullptr;
}
void free(int, void*) noexcept {}
void releaseIdleMemory(int) noexcept {}
void copy(void*, int, const void*, int, size_t) {
  unavailable();
}
void readStaged(int, const void*, size_t, const std::function<void(const void*)>&) {
  unavailable();
}
void readFile(int, void*, int, uint64_t, size_t) {
  unavailable();
}
struct PendingRead {};
PendingRead* startRead(int, const void*, size_t) {
  unavailable();
  return nullptr;
}
void finishRead(PendingRead*, const std::function<void(const void*)>&) {
  unavailable();
}
void dropRead(PendingRead*) noexcept {}
void synchronize(int) {
  unavailable();
}
void* stream(int) {
  unavailable();
  return nullptr;
}
int multiprocessors(int) {
  unavailable();
  return 0;
}
void setCurrent(int) {
  unavailable();
}
struct Graph {};
void beginCapture(int) {
  unavailable();
}
bool capturing(int) {
  return false;
}
void* captureScratch(int, size_t) {
  unavailable();
  return nullptr;
}
Graph* endCapture(int) {
  unavailable();
  return nullptr;
}
void abortCapture(int) noexcept {}
void launchGraph(Graph*) {
  unavailable();
}
void destroyGraph(Graph*) noexcept {}

}  // namespace lt::cuda
#endif
