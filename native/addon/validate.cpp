#include "validate.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "cuda/cuda_backend.h"

namespace lt::addon {

namespace {
// Kernel options have a dozen fields; a bound keeps a hostile object from making a call slow.
constexpr size_t kMaxFields = 256;
}  // namespace

IndexSnapshot::IndexSnapshot(const Device& device, std::vector<int32_t> contents)
    : device_(device), host_(std::move(contents)) {
  if (!device_.isCpu()) onDevice_ = cuda::alloc(device_.index, host_.size() * sizeof(int32_t));
}

// The device copy goes back to the stream-ordered pool, after the kernel that reads it.
IndexSnapshot::~IndexSnapshot() {
  if (onDevice_) cuda::free(device_.index, onDevice_);
}

bool overlaps(TensorObject* a, TensorObject* b) {
  const auto a0 = reinterpret_cast<uintptr_t>(a->data()), b0 = reinterpret_cast<uintptr_t>(b->data());
  return a0 < b0 + b->byteLength() && b0 < a0 + a->byteLength();
}

void expectApart(const KernelArgs& a, std::initializer_list<NamedTensor> written,
                 std::initializer_list<NamedTensor> read) {
  for (auto w = written.begin(); w != written.end(); ++w) {
    if (!w->second) continue;
    auto clash = [&](const NamedTensor& other) {
      if (other.second && overlaps(w->second, other.second))
        a.fail(std::string(w->first) + " overlaps " + other.first + ": give " + w->first + " a tensor of its own");
    };
    for (auto o = std::next(w); o != written.end(); ++o) clash(*o);
    for (const NamedTensor& r : read) clash(r);
  }
}

const int32_t* IndexSnapshot::data() const {
  return device_.isCpu() ? host_.data() : static_cast<const int32_t*>(onDevice_);
}

void IndexSnapshot::upload() const {
  if (onDevice_) cuda::copy(onDevice_, device_.index, host_.data(), -1, host_.size() * sizeof(int32_t));
}

KernelArgs::KernelArgs(const char* op, const Napi::CallbackInfo& info, CallMode mode)
    : op_(op), env_(info.Env()), state_(std::make_shared<State>(State{mode, {}, {}, {}})) {
  if (info.Length() < 1 || !info[0].IsObject()) throw Error(op_ + ": expected one options object");
  fields_ = readFields(op_, info[0].As<Napi::Object>(), 0);
}

// Reads every string-keyed field of `obj` and of its prototypes short of Object.prototype
// (a class instance's getters live on its prototype), each exactly once. Tensors are
// recognised here and nested plain objects read the same way, so nothing after this runs JS.
// The values stay referenced by this call's handle scope, so a tensor a getter created cannot
// be collected while the call uses it.
std::shared_ptr<KernelArgs::Fields> KernelArgs::readFields(const std::string& op, Napi::Object obj, int depth) {
  Napi::Env env = obj.Env();
  auto fields = std::make_shared<Fields>();
  std::vector<std::string> names;
  for (Napi::Object level = obj;;) {
    // Their elements would all be enumerated as names first (millions of them, for a large array).
    if (level.IsArray() || level.IsTypedArray() || level.IsArrayBuffer() || level.IsDataView())
      throw Error(
          op + ": the options must be a plain object, not an array, a typed array or a buffer (nor derive from one)");
    napi_value keys;
    NAPI_THROW_IF_FAILED(env,
                         napi_get_all_property_names(env, level, napi_key_own_only, napi_key_skip_symbols,
                                                     napi_key_numbers_to_strings, &keys),
                         fields);
    Napi::Array keyArray(env, keys);
    for (uint32_t i = 0; i < keyArray.Length(); i++) {
      names.push_back(keyArray.Get(i).As<Napi::String>().Utf8Value());
      if (names.size() > kMaxFields)
        throw Error(op + ": the options object has more than " + std::to_string(kMaxFields) + " fields");
    }
    napi_value proto;
    NAPI_THROW_IF_FAILED(env, napi_get_prototype(env, level, &proto), fields);
    Napi::Value next(env, proto);
    if (!next.IsObject()) break;
    napi_value protoOfNext;
    NAPI_THROW_IF_FAILED(env, napi_get_prototype(env, next, &protoOfNext), fields);
    if (!Napi::Value(env, protoOfNext).IsObject()) break;  // `next` is Object.prototype (or a null-prototype root)
    level = next.As<Napi::Object>();
  }
  for (const std::string& name : names) {
    if (fields->count(name)) continue;
    Field f;
    f.value = obj.Get(name);
    if (TensorObject::IsTensor(env, f.value)) {
      f.tensor = TensorObject::Unwrap(f.value);
    } else if (depth == 0 && f.value.IsObject() && !f.value.IsArray() && !f.value.IsTypedArray() &&
               !f.value.IsFunction()) {
      f.nested = readFields(op + " " + name, f.value.As<Napi::Object>(), depth + 1);
    }
    (*fields)[name] = std::move(f);
  }
  return fields;
}

const KernelArgs::Field* KernelArgs::field(const char* name) const {
  auto it = fields_->find(name);
  return it == fields_->end() ? nullptr : &it->second;
}

Napi::Value KernelArgs::value(const char* name) const {
  const Field* f = field(name);
  return f ? f->value : env_.Undefined();
}

void KernelArgs::fail(const std::string& message) const {
  throw Error(op_ + ": " + message);
}

bool KernelArgs::has(const char* name) const {
  Napi::Value v = value(name);
  return !v.IsUndefined() && !v.IsNull();
}

KernelArgs KernelArgs::object(const char* name) {
  const Field* f = field(name);
  if (!f || !f->nested) fail(std::string(name) + " must be an object");
  return KernelArgs(op_ + " " + name, env_, f->nested, state_);
}

TensorObject* KernelArgs::tensor(const char* name, bool optional) {
  const Field* f = field(name);
  if (!has(name)) {
    if (optional) return nullptr;
    fail(std::string(name) + " is required (a Tensor)");
  }
  if (!f->tensor) fail(std::string(name) + " must be a Tensor");
  TensorObject* t = f->tensor;
  if (t->disposed()) fail(std::string(name) + " is a disposed tensor: it was freed by dispose(); create a new one");
  // Rank-0 tensors cannot be made through the API; one that arrives anyway has no last
  // dimension for a kernel to read.
  if (t->shape().empty()) fail(std::string(name) + " has no dimensions: tensors passed to kernels need at least one");
  state_->used.push_back(t->storage());
  return t;
}

namespace {
// A value as an error message shows it, without running JS (a Symbol or an object's toString could).
std::string shown(const Napi::Value& v) {
  if (v.IsNumber()) return v.ToString().Utf8Value();
  if (v.IsString()) {
    const std::string s = v.As<Napi::String>().Utf8Value();
    return "\"" + (s.size() > 40 ? s.substr(0, 40) + "..." : s) + "\"";
  }
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? "true" : "false";
  if (v.IsNull()) return "null";
  if (v.IsBigInt()) return "a BigInt";
  if (v.IsSymbol()) return "a Symbol";
  if (v.IsFunction()) return "a function";
  if (v.IsArray()) return "an array";
  return "an object";
}
}  // namespace

int32_t KernelArgs::integer(const char* name, int32_t min, int32_t max) {
  Napi::Value v = value(name);
  if (v.IsUndefined() || v.IsNull()) fail(std::string(name) + " is required (an integer)");
  if (!v.IsNumber()) fail(std::string(name) + " must be an integer (a number), got " + shown(v));
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d != std::floor(d))
    fail(std::string(name) + " must be an integer, got " + v.ToString().Utf8Value());
  if (d < min || d > max)
    fail(std::string(name) + " must be in [" + std::to_string(min) + ", " + std::to_string(max) + "], got " +
         v.ToString().Utf8Value());
  return int32_t(d);
}

double KernelArgs::number(const char* name, double fallback) {
  if (!has(name)) return fallback;
  Napi::Value v = value(name);
  if (!v.IsNumber()) fail(std::string(name) + " must be a number, got " + shown(v));
  const double d = v.As<Napi::Number>().DoubleValue();
  // Kernels take it as a float32: 1e39 would become infinity there, and 1e-50 zero.
  const float f = float(d);
  if (!std::isfinite(d) || !std::isfinite(f) || !(f > 0))
    fail(std::string(name) + " must be a finite number > 0 that float32 holds (1.4e-45 to 3.4e38), got " +
         v.ToString().Utf8Value());
  return d;
}

bool KernelArgs::flag(const char* name) const {
  if (!has(name)) return false;
  const Napi::Value v = value(name);
  if (!v.IsBoolean()) fail(std::string(name) + " must be true or false, got " + v.ToString().Utf8Value());
  return v.As<Napi::Boolean>().Value();
}

int32_t KernelArgs::narrow(const std::string& what, int64_t value) const {
  if (value < 0 || value > std::numeric_limits<int32_t>::max())
    fail(what + " is " + std::to_string(value) + ", more than the " +
         std::to_string(std::numeric_limits<int32_t>::max()) +
         " this kernel can index (32-bit); split the work into smaller tensors");
  return int32_t(value);
}

void KernelArgs::expectRank(const char* name, TensorObject* t, size_t rank) const {
  if (t->shape().size() != rank)
    fail(std::string(name) + " must have " + std::to_string(rank) + " dimensions, got shape " +
         shapeString(t->shape()));
}

void KernelArgs::expectShape(const char* name, TensorObject* t, const Shape& shape) const {
  if (t->shape() != shape)
    fail(std::string(name) + " must have shape " + shapeString(shape) + ", got " + shapeString(t->shape()));
}

void KernelArgs::expectDType(const char* name, TensorObject* t, DType dtype) const {
  if (t->dtype() != dtype) fail(std::string(name) + " must be " + dtypeName(dtype) + ", got " + dtypeName(t->dtype()));
}

void KernelArgs::expectFloat(const char* name, TensorObject* t) const {
  if (!isFloatType(t->dtype())) fail(std::string(name) + " must be f32, f16 or bf16, got " + dtypeName(t->dtype()));
}

Device KernelArgs::sameDevice(const std::vector<std::pair<const char*, TensorObject*>>& tensors) const {
  const auto& first = tensors.front();
  for (const auto& [name, t] : tensors) {
    if (t && t->device() != first.second->device())
      fail(std::string("all tensors must be on one device: ") + first.first + " is on " +
           first.second->device().name() + " but " + name + " is on " + t->device().name() +
           " (use tensor.to(device))");
  }
  return first.second->device();
}

}  // namespace lt::addon
