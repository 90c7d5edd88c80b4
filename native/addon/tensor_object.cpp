#include "tensor_object.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "core/device.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "cuda/cuda_backend.h"
#include "dispatch.h"

namespace lt::addon {

napi_typedarray_type rawArrayType(DType t) {
  switch (t) {
    case DType::F32:
      return napi_float32_array;
    case DType::I32:
      return napi_int32_array;
    default:
      return napi_uint16_array;
  }
}

Napi::Value typedArrayOver(Napi::Env env, Napi::ArrayBuffer buffer, DType t) {
  napi_value result;
  size_t count = buffer.ByteLength() / dtypeSize(t);
  NAPI_THROW_IF_FAILED(env, napi_create_typedarray(env, rawArrayType(t), count, buffer, 0, &result), Napi::Value());
  return Napi::Value(env, result);
}

namespace {
// Reads up to this size come back in memory V8 allocates and its GC frees at once, even in a
// synchronous loop; larger ones in memory of ours that Node frees from the event loop, and can
// refuse (above its largest buffer) without ending the process.
constexpr size_t kMaxV8OwnedBytes = size_t(1) << 30;
// Reads above this size are first allocated by us as a trial (see newHostBuffer).
constexpr size_t kTrialAllocationBytes = size_t(256) << 20;

// The finalizer frees the memory exactly once: Node runs it itself when it refuses to create a
// buffer (too large), so creation notes whether that happened.
thread_local void* hostBufferBeingCreated = nullptr;
thread_local bool hostBufferFinalizedWhileCreating = false;

void finalizeHostBuffer(napi_env, void* data, void*) {
  if (data == hostBufferBeingCreated) hostBufferFinalizedWhileCreating = true;
  std::free(data);
}

[[noreturn]] void noHostMemory(size_t bytes, const char* what) {
  throw Error(std::string("out of host memory: could not allocate ") + std::to_string(bytes >> 20) + " MiB to " + what);
}
}  // namespace

Napi::ArrayBuffer newHostBuffer(Napi::Env env, size_t bytes, const char* what) {
  napi_value result = nullptr;
  if (bytes <= kMaxV8OwnedBytes) {
    // V8 ends the process when it cannot allocate a buffer: a large one is tried with an
    // allocation of ours first, so that a host that cannot give that much is an Error. Small
    // reads (a decode step's logits, every step) skip the trial.
    if (bytes > kTrialAllocationBytes) {
      void* trial = std::malloc(bytes);
      if (trial == nullptr) noHostMemory(bytes, what);
      std::free(trial);
    }
    if (napi_create_arraybuffer(env, bytes, nullptr, &result) != napi_ok) {
      napi_value pending;
      napi_get_and_clear_last_exception(env, &pending);
      noHostMemory(bytes, what);
    }
    return Napi::ArrayBuffer(env, result);
  }
  void* data = std::malloc(bytes);
  if (data == nullptr) noHostMemory(bytes, what);
  hostBufferBeingCreated = data;
  hostBufferFinalizedWhileCreating = false;
  const napi_status status = napi_create_external_arraybuffer(env, data, bytes, finalizeHostBuffer, nullptr, &result);
  hostBufferBeingCreated = nullptr;
  if (status != napi_ok) {
    if (!hostBufferFinalizedWhileCreating) std::free(data);
    napi_value pending;
    napi_get_and_clear_last_exception(env, &pending);
    throw Error(std::string("cannot ") + what + ": " + std::to_string(bytes) +
                " bytes is more than Node allows in one buffer; read it in parts (rows())");
  }
  return Napi::ArrayBuffer(env, result);
}

namespace {
Napi::FunctionReference* constructorRef(Napi::Env env) {
  return env.GetInstanceData<Napi::FunctionReference>();
}

// A JS array of dimensions as a Shape: integers >= 1 with at most kMaxElements in all (checked
// without overflow). Reading the array may run user code (getters), so callers read the shape
// before they look at any tensor.
Shape readShape(const Napi::Array& dims, const std::string& what) {
  Shape shape;
  for (uint32_t i = 0; i < dims.Length(); i++) {
    Napi::Value v = dims.Get(i);
    const double dim = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(dim >= 1) || dim > double(kMaxElements) || dim != double(int64_t(dim)))
      throw Error(what + " " + std::string(v.ToString().Utf8Value()) + " at dimension " + std::to_string(i) +
                  " is not a positive integer: every dimension must be >= 1");
    shape.push_back(int64_t(dim));
  }
  if (shape.empty()) throw Error(what + " has no dimensions: a tensor needs at least one (use [1] for a scalar)");
  checkedNumel(shape, what);
  return shape;
}

// The bytes of a TypedArray (over an ArrayBuffer or a SharedArrayBuffer: napi's ArrayBuffer
// accessors refuse the latter).
const uint8_t* typedArrayBytes(const Napi::TypedArray& array) {
  void* data = nullptr;
  NAPI_THROW_IF_FAILED(
      array.Env(), napi_get_typedarray_info(array.Env(), array, nullptr, nullptr, &data, nullptr, nullptr), nullptr);
  return static_cast<const uint8_t*>(data);
}

const char* rawArrayName(DType t) {
  switch (t) {
    case DType::F32:
      return "Float32Array";
    case DType::I32:
      return "Int32Array";
    default:
      return "Uint16Array";
  }
}
}  // namespace

// A reference to the storage, so that a collected tensor never frees memory a live view still
// points into. Shared by the tensor's record of the view and the view's finalizer: dispose()
// lets go of the storage through it once it has detached the view (a view moved to another
// buffer keeps it until that buffer's finalizer runs).
struct ViewHold {
  std::shared_ptr<Storage> storage;
};

Device parseDevice(const std::string& name) {
  if (name == "cpu") return Device{Device::Kind::CPU, 0};
  if (name == "cuda") return Device{Device::Kind::CUDA, 0};
  if (name.rfind("cuda:", 0) == 0 && name.size() > 5 && name.size() < 9 &&
      name.find_first_not_of("0123456789", 5) == std::string::npos)
    return Device{Device::Kind::CUDA, std::stoi(name.substr(5))};
  throw Error("unknown device '" + name + "': use 'cpu', 'cuda' or 'cuda:N'");
}

DType parseDType(const std::string& name) {
  if (name == "f32") return DType::F32;
  if (name == "f16") return DType::F16;
  if (name == "bf16") return DType::BF16;
  if (name == "i32") return DType::I32;
  throw Error("unknown dtype '" + name + "': use 'f32', 'f16', 'bf16' or 'i32'");
}

Napi::Function TensorObject::Init(Napi::Env env) {
  Napi::Function ctor = DefineClass(
      env, "NativeTensor",
      {InstanceMethod("read", &TensorObject::Read), InstanceMethod("readFloat32", &TensorObject::ReadFloat32),
       InstanceMethod("view", &TensorObject::View), InstanceMethod("viewBytes", &TensorObject::ViewBytes),
       InstanceMethod("write", &TensorObject::Write), InstanceMethod("copyTo", &TensorObject::CopyTo),
       InstanceMethod("copyFrom", &TensorObject::CopyFrom), InstanceMethod("readFile", &TensorObject::ReadFile),
       InstanceMethod("slice", &TensorObject::Slice), InstanceMethod("dispose", &TensorObject::Dispose),
       InstanceAccessor("disposed", &TensorObject::GetDisposed, nullptr),
       InstanceAccessor("bytes", &TensorObject::GetBytes, nullptr)});
  auto* ref = new Napi::FunctionReference(Napi::Persistent(ctor));
  env.SetInstanceData(ref);
  return ctor;
}

namespace {
// Marks the objects this constructor made. A tag check runs no JavaScript, where instanceof
// would (Symbol.hasInstance, a Proxy's getPrototypeOf) and could dispose a tensor mid-call.
constexpr napi_type_tag kTensorTag = {0x4c54'7465'6e73'6f72ULL, 0x61d3'0b7e'94c2'58f1ULL};
// What New() passes to the constructor, so that no other External makes a tensor without storage.
int fromNew = 0;
}  // namespace

bool TensorObject::IsTensor(Napi::Env, const Napi::Value& value) {
  return value.IsObject() && value.As<Napi::Object>().CheckTypeTag(&kTensorTag);
}

// new NativeTensor(shape: number[], dtype: string, device: string)
// allocates uninitialised memory; `write` fills it.
TensorObject::TensorObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorObject>(info) {
  Napi::Env env = info.Env();
  if (info.Length() == 1 && info[0].IsExternal() && info[0].As<Napi::External<int>>().Data() == &fromNew) {
    info.This().As<Napi::Object>().TypeTag(&kTensorTag);
    return;  // filled in by New()
  }
  if (info.Length() < 3 || !info[0].IsArray() || !info[1].IsString() || !info[2].IsString())
    throw Napi::TypeError::New(env, "NativeTensor(shape: number[], dtype: string, device: string)");
  Shape shape = readShape(info[0].As<Napi::Array>(), "tensor shape");
  const int64_t elements = numel(shape);
  dtype_ = parseDType(info[1].As<Napi::String>().Utf8Value());
  Device device = parseDevice(info[2].As<Napi::String>().Utf8Value());
  shape_ = shape;
  storage_ = std::make_shared<Storage>(device, size_t(elements) * dtypeSize(dtype_));
  reportOwnedMemory(env);
  info.This().As<Napi::Object>().TypeTag(&kTensorTag);
}

// Host memory is reported to V8 so that forgotten CPU tensors put pressure on the GC. Device
// memory is not: V8 would weigh GPU gigabytes as heap growth and collect over and over, a large
// share of a prefill's time (bench/README.md). CUDA tensors are freed by dispose() —
// the library disposes all of its own — or whenever the GC next finalizes them.
void TensorObject::reportOwnedMemory(Napi::Env env) {
  reportedBytes_ = storage_->device.isCpu() ? int64_t(storage_->bytes) : 0;
  if (reportedBytes_) Napi::MemoryManagement::AdjustExternalMemory(env, reportedBytes_);
}

Napi::Object TensorObject::New(Napi::Env env, std::shared_ptr<Storage> storage, DType dtype, const Shape& shape) {
  Napi::Object obj = constructorRef(env)->New({Napi::External<int>::New(env, &fromNew)});
  TensorObject* t = Unwrap(obj);
  t->dtype_ = dtype;
  t->shape_ = shape;
  t->storage_ = std::move(storage);
  t->reportOwnedMemory(env);
  return obj;
}

TensorObject::~TensorObject() {
  if (reportedBytes_) Napi::MemoryManagement::AdjustExternalMemory(Env(), -reportedBytes_);
}

void TensorObject::requireLive(const char* what) const {
  if (!storage_)
    throw Error(std::string("cannot ") + what + " a disposed tensor: it was freed by dispose(); create a new one");
}

void TensorObject::requireNoAsyncWriter(const char* what) const {
  if (storage_->asyncWriters > 0)
    throw Error(
        std::string("cannot ") + what +
        " this tensor: an async call still in flight (readFile, or a ...Async kernel's output) writes its memory; "
        "await that call first");
}

void TensorObject::release(Napi::Env env) {
  // A view is detached and lets go of the storage, so dispose() frees at once and JS can never
  // touch the freed memory. Views are held until now, so one already detached was transferred
  // (ArrayBuffer.prototype.transfer()): the buffer that took its memory holds the storage in its
  // finalizer, and frees it once that buffer is gone.
  for (auto& view : views_) {
    Napi::ArrayBuffer buffer = view.buffer.Value();
    if (!buffer.IsEmpty() && !buffer.IsDetached()) {
      buffer.Detach();
      view.hold->storage.reset();
    }
  }
  views_.clear();
  views_.shrink_to_fit();
  storage_.reset();
  if (reportedBytes_) Napi::MemoryManagement::AdjustExternalMemory(env, -reportedBytes_);
  reportedBytes_ = 0;
}

// read(): a copy of the raw contents as the dtype's TypedArray.
Napi::Value TensorObject::Read(const Napi::CallbackInfo& info) {
  requireLive("read");
  Napi::Env env = info.Env();
  Napi::ArrayBuffer buffer = newHostBuffer(env, byteLength(), "read a tensor");
  deviceCopy(buffer.Data(), Device{}, data(), storage_->device, byteLength());
  return typedArrayOver(env, buffer, dtype_);
}

// readFloat32(): a copy widened to Float32Array (f16/bf16 decoded, i32 converted). From a
// device, the bytes come through the pinned staging buffer and are widened by the thread pool
// straight into memory the array then owns: a decode step's logits ([batch, vocab]) come back
// without a zero-filled allocation, a second host copy or one thread touching every new page.
Napi::Value TensorObject::ReadFloat32(const Napi::CallbackInfo& info) {
  requireLive("read");
  Napi::Env env = info.Env();
  const size_t count = size_t(numel(shape_));
  Napi::ArrayBuffer buffer = newHostBuffer(env, count * sizeof(float), "read a tensor as float32");
  auto* values = static_cast<float*>(buffer.Data());
  if (storage_->device.isCpu()) {
    loadAsFloat(dtype_, data(), 0, count, values);
  } else {
    cuda::readStaged(storage_->device.index, data(), byteLength(), [&](const void* host) {
      parallelFor(
          int64_t(count),
          [&](int64_t begin, int64_t end) {
            loadAsFloat(dtype_, host, size_t(begin), size_t(end - begin), values + begin);
          },
          int64_t(1) << 16);
    });
  }
  return Napi::Float32Array::New(env, count, buffer, 0);
}

namespace {
// The finalizer's reference is deleted exactly once: Node runs the finalizer itself when it
// refuses to create a buffer (too large), so creation notes whether that happened.
thread_local void* hintBeingCreated = nullptr;
thread_local bool finalizedWhileCreating = false;

void finalizeView(napi_env, void*, void* hint) {
  if (hint == hintBeingCreated) finalizedWhileCreating = true;
  delete static_cast<std::shared_ptr<ViewHold>*>(hint);
}
}  // namespace

// An ArrayBuffer over `bytes` bytes at `data`, which `storage` owns, recorded so that dispose()
// detaches it. Throws lt::Error (freeing nothing twice) when Node refuses a buffer that large.
Napi::ArrayBuffer TensorObject::externalBuffer(Napi::Env env, void* data, size_t bytes, bool whole) {
  auto hold = std::make_shared<ViewHold>(ViewHold{storage_});
  auto* hint = new std::shared_ptr<ViewHold>(hold);
  hintBeingCreated = hint;
  finalizedWhileCreating = false;
  napi_value result = nullptr;
  const napi_status status = napi_create_external_arraybuffer(env, data, bytes, finalizeView, hint, &result);
  hintBeingCreated = nullptr;
  if (status != napi_ok) {
    if (!finalizedWhileCreating) delete hint;
    napi_value pending;
    napi_get_and_clear_last_exception(env, &pending);
    throw Error("cannot view " + std::to_string(bytes) + " bytes at once: Node refuses external buffers that large; " +
                "use viewBytes(byteOffset, byteLength) for a window of at most 1 GiB, or read() to copy");
  }
  // Records of buffers transferred away (detached) are dropped once their number doubles, so
  // views taken and transferred again and again do not grow this list.
  if (views_.size() >= pruneViewsAt_) {
    views_.erase(std::remove_if(views_.begin(), views_.end(),
                                [](ViewRecord& v) {
                                  Napi::ArrayBuffer buffer = v.buffer.Value();
                                  return buffer.IsEmpty() || buffer.IsDetached();
                                }),
                 views_.end());
    pruneViewsAt_ = std::max<size_t>(16, 2 * views_.size());
  }
  // Held until dispose(): one buffer serves every view() call, and dispose() can tell a buffer
  // transferred away (detached) from one collected (never, while held).
  Napi::ArrayBuffer buffer(env, result);
  views_.push_back(ViewRecord{Napi::Reference<Napi::ArrayBuffer>::New(buffer, 1), std::move(hold), whole});
  return buffer;
}

// view(): a zero-copy TypedArray over a CPU tensor's memory, detached on dispose(). Every view
// of one tensor shares one ArrayBuffer, held by the tensor until dispose() (or until JS
// transfers it away).
Napi::Value TensorObject::View(const Napi::CallbackInfo& info) {
  requireLive("view");
  Napi::Env env = info.Env();
  if (!storage_->device.isCpu())
    throw Error("view() needs a CPU tensor, this one is on " + storage_->device.name() +
                "; use read() to copy it back");
  return typedArrayOver(env, sharedBuffer(env), dtype_);
}

// The one buffer every view() (and, where it fits, every viewBytes() window) shares while it
// is attached; JS may transfer it away, and the next call makes another.
Napi::ArrayBuffer TensorObject::sharedBuffer(Napi::Env env) {
  for (auto it = views_.rbegin(); it != views_.rend(); ++it) {
    if (!it->whole) continue;
    Napi::ArrayBuffer shared = it->buffer.Value();
    if (!shared.IsDetached()) return shared;
  }
  return externalBuffer(env, data(), byteLength(), true);
}

// viewBytes(byteOffset, byteLength): a zero-copy Uint8Array over part of a CPU tensor's memory,
// at most 1 GiB, detached on dispose(). Tensors larger than one JS buffer may hold (4 GiB in
// Node 20) are filled and read through such windows.
constexpr double kMaxWindowBytes = double(size_t(1) << 30);
// The largest buffer every supported Node makes (Node 20: 4 GiB).
constexpr size_t kMaxSharedBytes = size_t(1) << 32;

Napi::Value TensorObject::ViewBytes(const Napi::CallbackInfo& info) {
  requireLive("view");
  Napi::Env env = info.Env();
  if (!storage_->device.isCpu())
    throw Error("viewBytes() needs a CPU tensor, this one is on " + storage_->device.name() +
                "; use read() to copy it back");
  const double offset = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
  const double length = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : -1;
  const double total = double(byteLength());
  if (!(offset >= 0) || !(length >= 0) || offset != std::floor(offset) || length != std::floor(length) ||
      offset + length > total || length > kMaxWindowBytes)
    throw Error("viewBytes(byteOffset, byteLength) needs integers with byteOffset + byteLength <= the tensor's " +
                std::to_string(byteLength()) + " bytes and byteLength <= 1 GiB");
  // A window of the shared buffer, so that windows add no buffers of their own; a tensor larger
  // than Node's largest buffer gets a buffer per window, each held until dispose().
  if (byteLength() <= kMaxSharedBytes) {
    try {
      return Napi::Uint8Array::New(env, size_t(length), sharedBuffer(env), size_t(offset));
    } catch (const Error&) {
      // This Node's largest buffer is smaller: a buffer of the window's own.
    }
  }
  Napi::ArrayBuffer buffer = externalBuffer(env, static_cast<uint8_t*>(data()) + size_t(offset), size_t(length), false);
  return Napi::Uint8Array::New(env, size_t(length), buffer, 0);
}

// write(data): copies a TypedArray in. The raw type of the dtype is copied bit for bit; a
// Float32Array into an f16/bf16 tensor is rounded to nearest-even.
constexpr size_t kMaxShadow = 1 << 20;  // i32 elements: page tables and slot lists are far smaller

Napi::Value TensorObject::Write(const Napi::CallbackInfo& info) {
  requireLive("write to");
  requireNoAsyncWriter("write to");
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray())
    throw Error(std::string("write(data) needs a TypedArray: ") + rawArrayName(dtype_) + " for " + dtypeName(dtype_));
  Napi::TypedArray array = info[0].As<Napi::TypedArray>();
  size_t count = size_t(numel(shape_));
  const uint8_t* src = typedArrayBytes(array);
  if (array.ElementLength() != count)
    throw Error("data has " + std::to_string(array.ElementLength()) + " elements but the tensor of shape " +
                shapeString(shape_) + " holds " + std::to_string(count));
  std::vector<uint8_t> converted;
  if (array.TypedArrayType() == napi_float32_array && (dtype_ == DType::F16 || dtype_ == DType::BF16)) {
    converted.resize(byteLength());
    storeFromFloat(dtype_, reinterpret_cast<const float*>(src), converted.data(), 0, count);
    src = converted.data();
  } else if (array.TypedArrayType() != rawArrayType(dtype_)) {
    throw Error(std::string("a ") + dtypeName(dtype_) + " tensor takes a " + rawArrayName(dtype_) +
                (dtype_ == DType::F16 || dtype_ == DType::BF16 ? " (raw bits) or a Float32Array (rounded)" : "") +
                ", not this TypedArray");
  }
  // The source is read once: the shadow is what reaches the device, even if the array is shared
  // with another thread that changes it meanwhile.
  std::vector<int32_t> shadow;
  if (dtype_ == DType::I32 && !storage_->device.isCpu() && count <= kMaxShadow) {
    const int32_t* ints = reinterpret_cast<const int32_t*>(src);
    shadow.assign(ints, ints + count);
    src = reinterpret_cast<const uint8_t*>(shadow.data());
  }
  deviceCopy(data(), storage_->device, src, Device{}, byteLength());
  dropShadow();
  if (!shadow.empty()) {
    shadow_ = std::move(shadow);
    shadowAt_ = storage_->writes;
  }
  return env.Undefined();
}

// copyTo(device): a new tensor with the same contents on `device`.
Napi::Value TensorObject::CopyTo(const Napi::CallbackInfo& info) {
  requireLive("copy");
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString())
    throw Error("copyTo(device) needs a device name such as 'cpu' or 'cuda:0'");
  Device target = parseDevice(info[0].As<Napi::String>().Utf8Value());
  auto storage = std::make_shared<Storage>(target, byteLength());
  deviceCopy(storage->data, target, data(), storage_->device, byteLength());
  return New(env, std::move(storage), dtype_, shape_);
}

// slice(offset: number, shape: number[]): a tensor over elements [offset, offset + numel(shape))
// of this one's memory, sharing it. The memory lives until this tensor and every slice of it
// are disposed (or collected).
Napi::Value TensorObject::Slice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsArray())
    throw Error("slice(offset: number, shape: number[])");
  const double offset = info[0].As<Napi::Number>().DoubleValue();
  const Shape shape = readShape(info[1].As<Napi::Array>(), "slice shape");
  requireLive("slice");
  const int64_t total = numel(shape_);
  if (!(offset >= 0) || offset > double(total) || offset != double(int64_t(offset)) ||
      int64_t(offset) + numel(shape) > total)
    throw Error("slice of " + std::to_string(numel(shape)) + " elements at offset " + info[0].ToString().Utf8Value() +
                " does not fit a tensor of " + std::to_string(total) + " elements " + shapeString(shape_));
  Napi::Object obj = New(env, storage_, dtype_, shape);
  TensorObject* t = Unwrap(obj);
  t->offset_ = offset_ + size_t(offset) * dtypeSize(dtype_);
  // The memory is already counted by its owner.
  Napi::MemoryManagement::AdjustExternalMemory(env, -t->reportedBytes_);
  t->reportedBytes_ = 0;
  return obj;
}

// copyFrom(src): copies another tensor's contents (same dtype and element count, any device).
Napi::Value TensorObject::CopyFrom(const Napi::CallbackInfo& info) {
  requireLive("copy into");
  requireNoAsyncWriter("copy into");
  if (info.Length() < 1 || !IsTensor(info.Env(), info[0])) throw Error("copyFrom(src) needs a tensor");
  TensorObject* src = Unwrap(info[0]);
  src->requireLive("copy from");
  if (src->dtype_ != dtype_ || numel(src->shape_) != numel(shape_))
    throw Error("copyFrom: source is " + std::string(dtypeName(src->dtype_)) + " " + shapeString(src->shape_) +
                ", destination " + dtypeName(dtype_) + " " + shapeString(shape_) +
                ": dtype and element count must match");
  const auto* from = static_cast<const uint8_t*>(src->data());
  auto* to = static_cast<uint8_t*>(data());
  const size_t bytes = byteLength();
  if (src->storage_ == storage_ && from < to + bytes && to < from + bytes && from != to) {
    // Overlapping slices of one tensor: a device copy may not overlap, so through a temporary.
    Storage scratch(storage_->device, bytes);
    deviceCopy(scratch.data, storage_->device, from, storage_->device, bytes);
    deviceCopy(to, storage_->device, scratch.data, storage_->device, bytes);
  } else {
    deviceCopy(to, storage_->device, from, src->storage_->device, bytes);
  }
  dropShadow();
  return info.Env().Undefined();
}

namespace {
// readFile(fd, position, byteOffset, byteLength): a Promise that settles once byteLength bytes
// of the open file fd from byte `position` are in this tensor at byteOffset, read on libuv's
// thread pool. Into a device tensor they go through pinned buffers, the DMA of one chunk under
// the read of the next: a checkpoint's weights reach the GPU without pageable staging. The
// caller keeps fd open until the Promise settles.
PreparedCall prepareReadFile(const Napi::CallbackInfo& info, CallMode) {
  TensorObject* self = TensorObject::Unwrap(info.This());
  self->requireLive("read a file into");
  self->requireNoAsyncWriter("read a file into");
  auto integer = [&](size_t i, double max, const char* name) {
    const double v = info.Length() > i && info[i].IsNumber() ? info[i].As<Napi::Number>().DoubleValue() : -1;
    if (!(v >= 0) || v > max || v != std::floor(v))
      throw Error(std::string("readFile(fd, position, byteOffset, byteLength): ") + name +
                  " must be an integer from 0 to " + std::to_string(int64_t(max)));
    return v;
  };
  const int fd = int(integer(0, double(std::numeric_limits<int>::max()), "fd"));
  const auto position = uint64_t(integer(1, 9007199254740991.0, "position"));
  const auto offset = size_t(integer(2, double(self->byteLength()), "byteOffset"));
  const auto length = size_t(integer(3, double(self->byteLength() - offset), "byteLength (past byteOffset)"));
  const Device device = self->device();
  if (capturing(device))
    throw Error("a file cannot be read into " + device.name() + " while it is being captured into a CUDA graph");
  checkNotCapturedElsewhere(device);
  self->dropShadow();
  void* dst = static_cast<uint8_t*>(self->data()) + offset;
  PreparedCall call;
  call.run = [dst, device, fd, position, length] { deviceReadFile(dst, device, fd, position, length); };
  call.keepAlive = {self->storage()};
  call.device = device;
  call.writes = {self->storage()};
  return call;
}
}  // namespace

Napi::Value TensorObject::ReadFile(const Napi::CallbackInfo& info) {
  return runAsync<prepareReadFile, false>(info);
}

Napi::Value TensorObject::Dispose(const Napi::CallbackInfo& info) {
  release(info.Env());
  return info.Env().Undefined();
}

Napi::Value TensorObject::GetDisposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !storage_);
}

Napi::Value TensorObject::GetBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), storage_ ? double(byteLength()) : 0.0);
}

}  // namespace lt::addon
