// The JS-visible native tensor (class NativeTensor). It shares one Storage with its slices;
// dispose() lets go of it at once (freeing it unless a slice, or a view's buffer moved away with
// transfer(), still holds it), detaches every zero-copy view so JS can never touch freed memory,
// and tells V8 the external memory is gone. The GC finalizer does the same for tensors users forget.
#pragma once
#include <napi.h>

#include <memory>
#include <vector>

#include "core/tensor.h"

namespace lt::addon {

struct ViewHold;  // what a view's ArrayBuffer owns (tensor_object.cpp)

class TensorObject : public Napi::ObjectWrap<TensorObject> {
 public:
  static Napi::Function Init(Napi::Env env);
  static bool IsTensor(Napi::Env env, const Napi::Value& value);
  static TensorObject* Unwrap(const Napi::Value& value) {
    return Napi::ObjectWrap<TensorObject>::Unwrap(value.As<Napi::Object>());
  }
  // Wraps freshly allocated storage in a new JS NativeTensor.
  static Napi::Object New(Napi::Env env, std::shared_ptr<Storage> storage, DType dtype, const Shape& shape);

  explicit TensorObject(const Napi::CallbackInfo& info);
  ~TensorObject() override;

  bool disposed() const { return !storage_; }
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  const Device& device() const { return storage_->device; }
  // The contents of an i32 device tensor as last written from the host, so index checks (page
  // tables, slots) need not wait for the device; null when unknown (written since, by a kernel
  // or through another tensor over the same memory).
  const std::vector<int32_t>* hostShadow() const {
    return shadow_.empty() || !storage_ || shadowAt_ != storage_->writes ? nullptr : &shadow_;
  }
  // Notes a write to this tensor's memory that its shadow, and every other view's, does not hold.
  void dropShadow() {
    shadow_.clear();
    shadow_.shrink_to_fit();
    if (storage_) storage_->writes++;
  }
  void* data() const { return static_cast<uint8_t*>(storage_->data) + offset_; }
  size_t byteLength() const { return size_t(numel(shape_)) * dtypeSize(dtype_); }
  // Throws, naming `what` was asked, when the tensor was disposed.
  void requireLive(const char* what) const;
  // Throws, naming `what` was asked, while an async call in flight writes this memory.
  void requireNoAsyncWriter(const char* what) const;

 private:
  Napi::Value Read(const Napi::CallbackInfo& info);
  Napi::Value ReadFloat32(const Napi::CallbackInfo& info);
  Napi::Value View(const Napi::CallbackInfo& info);
  Napi::Value ViewBytes(const Napi::CallbackInfo& info);
  Napi::Value Write(const Napi::CallbackInfo& info);
  Napi::Value CopyTo(const Napi::CallbackInfo& info);
  Napi::Value CopyFrom(const Napi::CallbackInfo& info);
  Napi::Value ReadFile(const Napi::CallbackInfo& info);
  Napi::Value Slice(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value GetDisposed(const Napi::CallbackInfo& info);
  Napi::Value GetBytes(const Napi::CallbackInfo& info);

  void release(Napi::Env env);
  void reportOwnedMemory(Napi::Env env);
  Napi::ArrayBuffer externalBuffer(Napi::Env env, void* data, size_t bytes, bool whole);
  Napi::ArrayBuffer sharedBuffer(Napi::Env env);

  std::shared_ptr<Storage> storage_;
  DType dtype_ = DType::F32;
  Shape shape_;
  // Zero-copy views and the storage reference each one holds (shared with the view's
  // finalizer); `whole` marks the buffer view() shares, the others are viewBytes() windows.
  struct ViewRecord {
    Napi::Reference<Napi::ArrayBuffer> buffer;
    std::shared_ptr<ViewHold> hold;
    bool whole;
  };
  std::vector<ViewRecord> views_;
  size_t pruneViewsAt_ = 16;
  int64_t reportedBytes_ = 0;
  size_t offset_ = 0;  // bytes into the storage (slices)
  std::vector<int32_t> shadow_;
  uint64_t shadowAt_ = 0;  // the storage's write count the shadow was taken at
};

// The TypedArray type that holds each dtype's raw bits (16-bit floats as Uint16Array), and such
// an array over `buffer`: what reads of a tensor's contents return.
napi_typedarray_type rawArrayType(DType t);
Napi::Value typedArrayOver(Napi::Env env, Napi::ArrayBuffer buffer, DType t);
// A new ArrayBuffer of `bytes` bytes of host memory (uninitialised) that JS owns. Throws lt::Error,
// rather than V8's out-of-memory abort of the whole process, when the host cannot give that much
// or Node refuses a buffer that large.
Napi::ArrayBuffer newHostBuffer(Napi::Env env, size_t bytes, const char* what);

// Parses "cpu", "cuda" or "cuda:N"; throws lt::Error on anything else.
Device parseDevice(const std::string& name);
// Parses "f32", "f16", "bf16" or "i32"; throws lt::Error on anything else.
DType parseDType(const std::string& name);

}  // namespace lt::addon
