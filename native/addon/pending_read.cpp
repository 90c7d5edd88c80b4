// Reads that do not wait (lib/runtime/tensor.ts, Tensor.readLater): startRead(tensor) queues a
// copy of a small device tensor into pinned host memory behind the work already queued on its
// device and returns a handle at once; finishRead(handle) waits for that copy alone and returns
// the contents as the dtype's TypedArray. How a decode step's tokens come back while the next
// step already runs. A CPU tensor is copied at once. A handle that is never finished gives its
// buffer back when it is collected.
#include <napi.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bindings.h"
#include "core/error.h"
#include "cuda/cuda_backend.h"
#include "graph.h"
#include "tensor_object.h"

namespace lt::addon {
namespace {

struct ReadHandle {
  DType dtype = DType::F32;
  size_t bytes = 0;
  cuda::PendingRead* pending = nullptr;  // a device read not yet finished
  std::vector<uint8_t> copied;           // a CPU tensor's contents
  bool finished = false;
};

// Marks the Externals that hold a ReadHandle, so that another handle (a graph's) passed where a
// read is expected is refused rather than read as one.
constexpr napi_type_tag kReadHandleTag = {0x4c54'7265'6164'6801ULL, 0x27c4'9a0e'b361'f5d8ULL};

// The read's bytes as the dtype's TypedArray, in memory JS owns.
Napi::Value contentsOf(Napi::Env env, const void* bytes, size_t length, DType dtype) {
  Napi::ArrayBuffer buffer = newHostBuffer(env, length, "read a tensor");
  if (length > 0) std::memcpy(buffer.Data(), bytes, length);
  return typedArrayOver(env, buffer, dtype);
}

// startRead(tensor): a handle to the read (an External).
Napi::Value StartRead(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !TensorObject::IsTensor(info.Env(), info[0]))
    throw Error("startRead(tensor) needs a tensor");
  TensorObject* t = TensorObject::Unwrap(info[0]);
  t->requireLive("read");
  auto read = std::make_unique<ReadHandle>();
  read->dtype = t->dtype();
  read->bytes = t->byteLength();
  const Device device = t->device();
  if (device.isCpu()) {
    const auto* from = static_cast<const uint8_t*>(t->data());
    read->copied.assign(from, from + read->bytes);
  } else {
    if (capturing(device))
      throw Error("a tensor cannot be read from " + device.name() + " while it is being captured into a CUDA graph");
    checkNotCapturedElsewhere(device);
    if (read->bytes > cuda::kMaxPendingReadBytes)
      throw Error("readLater: the tensor holds " + std::to_string(read->bytes) + " bytes, more than the " +
                  std::to_string(cuda::kMaxPendingReadBytes) + " a pending read takes; use toArray()");
    read->pending = cuda::startRead(device.index, t->data(), read->bytes);
  }
  auto external = Napi::External<ReadHandle>::New(info.Env(), read.release(), [](Napi::Env, ReadHandle* r) {
    cuda::dropRead(r->pending);
    delete r;
  });
  external.TypeTag(&kReadHandleTag);
  return external;
}

// finishRead(handle): the contents, once the copy has landed; a handle is finished once.
Napi::Value FinishRead(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsExternal() ||
      !info[0].As<Napi::External<ReadHandle>>().CheckTypeTag(&kReadHandleTag))
    throw Error("finishRead: expected a read handle (from startRead)");
  ReadHandle* read = info[0].As<Napi::External<ReadHandle>>().Data();
  if (read->finished) throw Error("finishRead: this read was already finished; start another");
  read->finished = true;
  if (read->pending == nullptr) return contentsOf(info.Env(), read->copied.data(), read->bytes, read->dtype);
  cuda::PendingRead* pending = read->pending;
  read->pending = nullptr;
  Napi::Value result;
  try {
    cuda::finishRead(pending,
                     [&](const void* host) { result = contentsOf(info.Env(), host, read->bytes, read->dtype); });
  } catch (...) {
    cuda::dropRead(pending);
    throw;
  }
  cuda::dropRead(pending);
  return result;
}

}  // namespace

void RegisterPendingReads(Napi::Env env, Napi::Object exports) {
  exports.Set("startRead", Napi::Function::New(env, StartRead, "startRead"));
  exports.Set("finishRead", Napi::Function::New(env, FinishRead, "finishRead"));
}

}  // namespace lt::addon
