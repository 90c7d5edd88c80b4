// Argument checking for kernel calls: every failure is an lt::Error whose message names the
// operation, the argument, what was expected and what was given.
//
// The options object is read whole, into plain values, when KernelArgs is constructed: every
// getter, Proxy trap or prototype lookup runs then, before any tensor is checked, so user code
// cannot dispose or change a tensor between its check and the kernel.
#pragma once
#include <napi.h>

#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "tensor_object.h"

namespace lt::addon {

// Sync calls run (CPU) or are queued on the device's stream (CUDA) before JS runs again; async
// calls run later on a worker thread, so what they read must not be JS-writable meanwhile.
enum class CallMode { Sync, Async };

// An index tensor's contents as they were checked, owned by one async call: the kernel reads
// this copy (host memory, or a device copy uploaded on the stream right before the kernel), so
// a write() made after the call was issued cannot put an unchecked index in front of it.
class IndexSnapshot {
 public:
  IndexSnapshot(const Device& device, std::vector<int32_t> contents);
  ~IndexSnapshot();
  IndexSnapshot(const IndexSnapshot&) = delete;
  IndexSnapshot& operator=(const IndexSnapshot&) = delete;
  // The copy the kernel reads: host memory for a CPU call, device memory for a CUDA call.
  const int32_t* data() const;
  // Copies the checked contents to the device copy, ordered on the device's stream; a CUDA
  // call does this on its worker thread just before it enqueues the kernel.
  void upload() const;

 private:
  Device device_;
  std::vector<int32_t> host_;
  void* onDevice_ = nullptr;
};

// Whether two tensors share any byte (views of one storage may).
bool overlaps(TensorObject* a, TensorObject* b);

class KernelArgs;
using NamedTensor = std::pair<const char*, TensorObject*>;
// Fails if a tensor of `written` shares bytes with another of `written` or with one of `read`
// (null entries are absent tensors): a kernel that reads or writes twice what it writes would give
// wrong results, or corrupt an input.
void expectApart(const KernelArgs& a, std::initializer_list<NamedTensor> written,
                 std::initializer_list<NamedTensor> read);

class KernelArgs {
 public:
  KernelArgs(const char* op, const Napi::CallbackInfo& info, CallMode mode = CallMode::Sync);

  // A required (or, with optional=true, possibly absent → nullptr) live tensor field.
  TensorObject* tensor(const char* name, bool optional = false);
  int32_t integer(const char* name, int32_t min, int32_t max);
  double number(const char* name, double fallback);
  // An optional boolean field: absent is false.
  bool flag(const char* name) const;
  bool has(const char* name) const;
  // The field as it was read (undefined when absent).
  Napi::Value value(const char* name) const;
  KernelArgs object(const char* name);  // a nested options object

  void expectShape(const char* name, TensorObject* t, const Shape& shape) const;
  void expectRank(const char* name, TensorObject* t, size_t rank) const;
  void expectDType(const char* name, TensorObject* t, DType dtype) const;
  void expectFloat(const char* name, TensorObject* t) const;
  // All tensors live on one device; returns it.
  Device sameDevice(const std::vector<std::pair<const char*, TensorObject*>>& tensors) const;
  // `value` (a size or count) as the int32 a kernel indexes with, or an error naming `what`.
  int32_t narrow(const std::string& what, int64_t value) const;
  [[noreturn]] void fail(const std::string& message) const;

  const std::string& op() const { return op_; }
  CallMode mode() const { return state_->mode; }
  // Storage of every tensor read so far: an async call keeps them alive until it ends.
  const std::vector<std::shared_ptr<Storage>>& used() const { return state_->used; }
  // The index copies an async call's kernel reads (see IndexSnapshot); the call owns them.
  const std::vector<std::shared_ptr<IndexSnapshot>>& snapshots() const { return state_->snapshots; }
  void keepSnapshot(std::shared_ptr<IndexSnapshot> snapshot) { state_->snapshots.push_back(std::move(snapshot)); }
  // Declares `t` an i32 output of the call (the only kind an index check reads): its host shadow
  // goes, and while an async call writes it, index checks refuse its memory.
  void writesIndices(TensorObject* t) {
    t->dropShadow();
    state_->writesIndices.push_back(t->storage());
  }
  const std::vector<std::shared_ptr<Storage>>& indexOutputs() const { return state_->writesIndices; }

 private:
  // One field of the options object, read once.
  struct Field {
    Napi::Value value;
    TensorObject* tensor = nullptr;                        // when the value is a NativeTensor
    std::shared_ptr<std::map<std::string, Field>> nested;  // when it is a plain options object
  };
  using Fields = std::map<std::string, Field>;
  struct State {
    CallMode mode;
    std::vector<std::shared_ptr<Storage>> used;
    std::vector<std::shared_ptr<IndexSnapshot>> snapshots;
    std::vector<std::shared_ptr<Storage>> writesIndices;
  };
  KernelArgs(std::string op, Napi::Env env, std::shared_ptr<Fields> fields, std::shared_ptr<State> state)
      : op_(std::move(op)), env_(env), fields_(std::move(fields)), state_(std::move(state)) {}
  static std::shared_ptr<Fields> readFields(const std::string& op, Napi::Object obj, int depth);
  const Field* field(const char* name) const;

  std::string op_;
  Napi::Env env_;
  std::shared_ptr<Fields> fields_;
  std::shared_ptr<State> state_;
};

}  // namespace lt::addon
