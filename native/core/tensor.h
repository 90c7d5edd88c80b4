// A tensor's bytes, shared between the JS object that owns them and any async kernel still
// using them: dispose() drops the owner's reference, and the memory goes back the moment the
// last user lets go, so a tensor disposed mid-kernel is never freed under the kernel.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "device.h"
#include "dtype.h"

namespace lt {

// Bytes held by live storages, per backend: what memoryUsage() reports, and how tests see
// that dispose() and the GC finalizer really free.
struct LiveBytes {
  static std::atomic<int64_t>& of(const Device& d) {
    static std::atomic<int64_t> cpu{0}, cuda{0};
    return d.isCpu() ? cpu : cuda;
  }
};

struct Storage {
  Storage(const Device& d, size_t n) : device(d), bytes(n), data(deviceAlloc(d, n)) {
    LiveBytes::of(device) += int64_t(bytes);
  }
  ~Storage() {
    deviceFree(device, data, bytes);
    LiveBytes::of(device) -= int64_t(bytes);
  }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  const Device device;
  const size_t bytes;
  void* const data;
  // Async calls in flight that write this memory (readFile's destination, an ...Async kernel's
  // i32 outputs), counted on the JS thread: index checks refuse memory that may change under the
  // kernel, and write/copyFrom/readFile refuse it too.
  int asyncWriters = 0;
  // Writes to this memory through any tensor over it (write(), copyFrom, readFile, a kernel's
  // index output, an async write as it settles, a graph launch into its input), counted on the
  // JS thread: a tensor's host shadow of its contents holds only while no write came after it.
  uint64_t writes = 0;
};

using Shape = std::vector<int64_t>;

// The largest tensor: 2^40 elements (4 TiB of f32), far above any memory, so that sizes in
// bytes and element counts never overflow int64.
constexpr int64_t kMaxElements = int64_t(1) << 40;

// The element count of a shape whose dimensions are integers >= 1, checked against
// kMaxElements before each multiplication; throws lt::Error (from tensor_shape.cpp) naming
// `what` when the product is larger.
int64_t checkedNumel(const Shape& shape, const std::string& what);

// The element count of a shape already checked by checkedNumel (every live tensor's is).
inline int64_t numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

inline std::string shapeString(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace lt
