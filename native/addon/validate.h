// Argument checking for kernel calls: every failure is an lt::Error whose message names the
// operation, the argument, what was expected and what was given.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "tensor_object.h"

namespace lt::addon {

class KernelArgs {
 public:
  KernelArgs(const char* op, const Napi::CallbackInfo& info);

  // A required (or, with optional=true, possibly absent → nullptr) live tensor field.
  TensorObject* tensor(const char* name, bool optional = false);
  int32_t integer(const char* name, int32_t min, int32_t max);
  int32_t integerOr(const char* name, int32_t fallback, int32_t min, int32_t max);
  double number(const char* name, double fallback);
  bool has(const char* name) const;
  KernelArgs object(const char* name);  // a nested options object

  void expectShape(const char* name, TensorObject* t, const Shape& shape) const;
  void expectRank(const char* name, TensorObject* t, size_t rank) const;
  void expectDType(const char* name, TensorObject* t, DType dtype) const;
  void expectFloat(const char* name, TensorObject* t) const;
  // All tensors live on one device; returns it.
  Device sameDevice(const std::vector<std::pair<const char*, TensorObject*>>& tensors) const;
  [[noreturn]] void fail(const std::string& message) const;

  const std::string& op() const { return op_; }
  // Storage of every tensor read so far: an async call keeps them alive until it ends.
  const std::vector<std::shared_ptr<Storage>>& used() const { return *used_; }

 private:
  KernelArgs(std::string op, Napi::Object obj, std::shared_ptr<std::vector<std::shared_ptr<Storage>>> used)
      : op_(std::move(op)), obj_(obj), used_(std::move(used)) {}
  std::string op_;
  Napi::Object obj_;
  std::shared_ptr<std::vector<std::shared_ptr<Storage>>> used_;
};

}  // namespace lt::addon
