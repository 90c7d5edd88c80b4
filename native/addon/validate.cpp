#include "validate.h"

#include <cmath>

namespace lt::addon {

KernelArgs::KernelArgs(const char* op, const Napi::CallbackInfo& info)
    : op_(op), used_(std::make_shared<std::vector<std::shared_ptr<Storage>>>()) {
  if (info.Length() < 1 || !info[0].IsObject()) throw Error(op_ + ": expected one options object");
  obj_ = info[0].As<Napi::Object>();
}

void KernelArgs::fail(const std::string& message) const { throw Error(op_ + ": " + message); }

bool KernelArgs::has(const char* name) const {
  Napi::Value v = obj_.Get(name);
  return !v.IsUndefined() && !v.IsNull();
}

KernelArgs KernelArgs::object(const char* name) {
  Napi::Value v = obj_.Get(name);
  if (!v.IsObject()) fail(std::string(name) + " must be an object");
  return KernelArgs(op_ + " " + name, v.As<Napi::Object>(), used_);
}

TensorObject* KernelArgs::tensor(const char* name, bool optional) {
  Napi::Value v = obj_.Get(name);
  if (v.IsUndefined() || v.IsNull()) {
    if (optional) return nullptr;
    fail(std::string(name) + " is required (a Tensor)");
  }
  if (!TensorObject::IsTensor(obj_.Env(), v)) fail(std::string(name) + " must be a Tensor");
  TensorObject* t = TensorObject::Unwrap(v);
  if (t->disposed()) fail(std::string(name) + " is a disposed tensor: it was freed by dispose(); create a new one");
  used_->push_back(t->storage());
  return t;
}

int32_t KernelArgs::integer(const char* name, int32_t min, int32_t max) {
  Napi::Value v = obj_.Get(name);
  if (!v.IsNumber()) fail(std::string(name) + " is required (an integer)");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d != std::floor(d))
    fail(std::string(name) + " must be an integer, got " + v.ToString().Utf8Value());
  if (d < min || d > max)
    fail(std::string(name) + " must be in [" + std::to_string(min) + ", " + std::to_string(max) + "], got " +
         v.ToString().Utf8Value());
  return int32_t(d);
}

int32_t KernelArgs::integerOr(const char* name, int32_t fallback, int32_t min, int32_t max) {
  return has(name) ? integer(name, min, max) : fallback;
}

double KernelArgs::number(const char* name, double fallback) {
  if (!has(name)) return fallback;
  Napi::Value v = obj_.Get(name);
  if (!v.IsNumber()) fail(std::string(name) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d <= 0) fail(std::string(name) + " must be a finite number > 0, got " + v.ToString().Utf8Value());
  return d;
}

void KernelArgs::expectRank(const char* name, TensorObject* t, size_t rank) const {
  if (t->shape().size() != rank)
    fail(std::string(name) + " must have " + std::to_string(rank) + " dimensions, got shape " + shapeString(t->shape()));
}

void KernelArgs::expectShape(const char* name, TensorObject* t, const Shape& shape) const {
  if (t->shape() != shape)
    fail(std::string(name) + " must have shape " + shapeString(shape) + ", got " + shapeString(t->shape()));
}

void KernelArgs::expectDType(const char* name, TensorObject* t, DType dtype) const {
  if (t->dtype() != dtype)
    fail(std::string(name) + " must be " + dtypeName(dtype) + ", got " + dtypeName(t->dtype()));
}

void KernelArgs::expectFloat(const char* name, TensorObject* t) const {
  if (!isFloatType(t->dtype())) fail(std::string(name) + " must be f32, f16 or bf16, got " + dtypeName(t->dtype()));
}

Device KernelArgs::sameDevice(const std::vector<std::pair<const char*, TensorObject*>>& tensors) const {
  const auto& first = tensors.front();
  for (const auto& [name, t] : tensors) {
    if (t && t->device() != first.second->device())
      fail(std::string("all tensors must be on one device: ") + first.first + " is on " + first.second->device().name() +
           " but " + name + " is on " + t->device().name() + " (use tensor.to(device))");
  }
  return first.second->device();
}

}  // namespace lt::addon
