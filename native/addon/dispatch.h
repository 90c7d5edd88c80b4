// How the addon runs a validated call: synchronously, or on libuv's thread pool with a
// Promise, keeping the tensors it uses alive until it ends; and how it waits on a CUDA stream.
// A sync call made while its device is being captured into a CUDA graph is recorded instead
// (graph.h), and the graph keeps its tensors alive; async calls cannot be recorded.
#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <new>
#include <vector>

#include "cancel.h"
#include "core/error.h"
#include "core/tensor.h"
#include "cuda/cuda_backend.h"
#include "validate.h"
#include "graph.h"
#ifdef LT_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace lt::addon {

// A validated call: the work to run, the device it runs on and the memory it must keep alive
// while it runs.
struct PreparedCall {
  std::function<void()> run;
  std::vector<std::shared_ptr<Storage>> keepAlive;
  Device device{};
  // The memory index checks must not read while an async call runs (Storage::asyncWriters): its
  // i32 outputs, or readFile's destination.
  std::vector<std::shared_ptr<Storage>> writes;
};

#ifdef LT_WITH_CUDA
// Enqueues a CUDA kernel on the device's stream. A sync call returns without waiting (calls on
// one device are ordered by the stream, and reading a result back waits), so a fault surfaces
// at the next call that waits; an async call waits before its Promise settles.
template <typename Launch>
inline void onCuda(const Device& device, Launch launch) {
  cuda::setCurrent(device.index);
  launch(static_cast<cudaStream_t>(cuda::stream(device.index)));
}
#endif

#ifdef LT_WITH_CUDA
// Device scratch memory of one CUDA call: from the device's pool and given back when the call
// ends — or, while the device is being captured, the capture's scratch, which the graph keeps
// for its replays.
class CallScratch {
 public:
  CallScratch(const Device& device, size_t bytes) : device_(device) {
    if (bytes == 0) return;
    recorded_ = cuda::capturing(device.index);
    ptr_ = recorded_ ? cuda::captureScratch(device.index, bytes) : cuda::alloc(device.index, bytes);
  }
  ~CallScratch() {
    if (!recorded_) cuda::free(device_.index, ptr_);
  }
  CallScratch(const CallScratch&) = delete;
  CallScratch& operator=(const CallScratch&) = delete;
  void* get() const { return ptr_; }

 private:
  Device device_;
  void* ptr_ = nullptr;
  bool recorded_ = false;
};
#endif

#ifndef LT_WITH_CUDA
[[noreturn]] inline void noCudaKernel(const Device& device, const char* op) {
  throw lt::Error(std::string(op) + ": tensors are on " + device.name() + " but " +
                  (cuda::availability().available ? "this build has no CUDA kernels" : cuda::availability().reason));
}
#endif

// Runs a prepared call on libuv's thread pool, unless its cancel flag is set by then; the
// Promise settles on the main thread.
class KernelWorker : public Napi::AsyncWorker {
 public:
  KernelWorker(Napi::Env env, PreparedCall call, CancelFlag cancel)
      : Napi::AsyncWorker(env, "lighttransfer.kernel"),
        call_(std::move(call)),
        cancel_(std::move(cancel)),
        deferred_(Napi::Promise::Deferred::New(env)) {
    asyncCallStarted(call_.device);
    for (const auto& storage : call_.writes) storage->asyncWriters++;
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    if (cancel_ && cancel_->load(std::memory_order_acquire)) {
      SetError(kCancelledBeforeRun);
      return;
    }
    ran_ = true;
    try {
      call_.run();
      if (!call_.device.isCpu()) cuda::synchronize(call_.device.index);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    settle();
    deferred_.Resolve(Env().Undefined());
  }
  void OnError(const Napi::Error& e) override {
    settle();
    deferred_.Reject(e.Value());
  }

 private:
  void settle() {
    asyncCallEnded(call_.device);
    // What landed is newer than any host shadow taken while the call ran (a cancelled call wrote nothing).
    for (const auto& storage : call_.writes) storage->asyncWriters--, storage->writes += ran_ ? 1 : 0;
    call_.writes.clear();
    call_.keepAlive.clear();
  }

  PreparedCall call_;
  CancelFlag cancel_;
  bool ran_ = false;
  Napi::Promise::Deferred deferred_;
};

using Prepare = PreparedCall (*)(const Napi::CallbackInfo&, CallMode);

template <Prepare prepare>
inline Napi::Value runNow(const Napi::CallbackInfo& info) {
  beginCall();
  PreparedCall call = prepare(info, CallMode::Sync);
  checkNotCapturedElsewhere(call.device);
  recordCall(call.device, call.keepAlive);
  call.run();
  return info.Env().Undefined();
}

// Validation errors reject the Promise rather than throw, as async APIs are expected to. A
// kernel's optional second argument is a cancel token (cancel.h).
template <Prepare prepare, bool cancellable = true>
inline Napi::Value runAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PreparedCall call;
  CancelFlag cancel;
  try {
    beginCall();
    if (cancellable) cancel = cancelFlagOf(info, 1);
    call = prepare(info, CallMode::Async);
    checkNotCapturedElsewhere(call.device);
    if (capturing(call.device))
      throw Error("async kernel calls cannot be recorded into a CUDA graph: " + call.device.name() +
                  " is being captured; use the sync form");
  } catch (const Napi::Error& e) {
    // What JavaScript threw (an option's getter, say), as it threw it, not just its message.
    auto deferred = Napi::Promise::Deferred::New(env);
    deferred.Reject(e.Value());
    return deferred.Promise();
  } catch (const std::exception& e) {
    auto deferred = Napi::Promise::Deferred::New(env);
    deferred.Reject(Napi::Error::New(env, e.what()).Value());
    return deferred.Promise();
  }
  auto* worker = new KernelWorker(env, std::move(call), std::move(cancel));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// The call that runs the CPU or the CUDA form of an op for `device`: cpuFn(p), or
// cudaFn(p, stream) on the device's stream (LT_CUDA_FN(name) wraps cuda::name). The call owns
// the index snapshots its params point at (async calls); a CUDA call uploads them on the
// stream first, so the kernel reads exactly what was checked.
template <typename Params, typename Cpu, typename Cuda>
PreparedCall dispatchCall(const KernelArgs& a, const Device& device, const Params& p, Cpu cpuFn, Cuda cudaFn) {
  PreparedCall call{nullptr, a.used(), device,
                    a.mode() == CallMode::Async ? a.indexOutputs() : std::vector<std::shared_ptr<Storage>>{}};
  auto snapshots = a.snapshots();
  if (device.isCpu()) {
    call.run = [p, cpuFn, snapshots, op = a.op()] {
      try {
        cpuFn(p);
      } catch (const std::bad_alloc&) {
        throw Error(
            op + ": the host ran out of memory for the kernel's working buffers; free memory or pass smaller tensors");
      }
    };
  } else {
#ifdef LT_WITH_CUDA
    call.run = [p, device, cudaFn, snapshots] {
      onCuda(device, [&](cudaStream_t s) {
        for (const auto& snapshot : snapshots) snapshot->upload();
        cudaFn(p, s);
      });
    };
#else
    (void)cudaFn;
    noCudaKernel(device, a.op().c_str());
#endif
  }
  return call;
}

#ifdef LT_WITH_CUDA
#define LT_CUDA_FN(fn) [](const auto& p, cudaStream_t s) { cuda::fn(p, s); }
#else
#define LT_CUDA_FN(fn) nullptr
#endif

// Adds `name` and `nameAsync` to exports for a prepare function.
template <Prepare prepare>
void exportCall(Napi::Env env, Napi::Object exports, const char* name) {
  exports.Set(name, Napi::Function::New(env, runNow<prepare>, name));
  const std::string asyncName = std::string(name) + "Async";
  exports.Set(asyncName, Napi::Function::New(env, runAsync<prepare>, asyncName));
}

}  // namespace lt::addon
