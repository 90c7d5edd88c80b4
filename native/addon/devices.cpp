// Device and thread entry points for JS: devices(), cudaStatus(), memoryUsage(), setThreads()
// and getThreads().
#include <napi.h>

#include <fstream>
#include <string>
#include <unistd.h>

#include "bindings.h"
#include "core/error.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "cuda/cuda_backend.h"
#include "graph.h"
#include "tensor_object.h"

namespace lt::addon {
namespace {

std::string cpuModelName() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "cpu";
}

double hostMemoryBytes() {
  long pages = sysconf(_SC_PHYS_PAGES), pageSize = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && pageSize > 0 ? double(pages) * double(pageSize) : 0.0;
}

// devices(): the CPU, then every CUDA device the runtime sees.
Napi::Value Devices(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array list = Napi::Array::New(env);
  Napi::Object cpu = Napi::Object::New(env);
  cpu.Set("id", "cpu");
  cpu.Set("type", "cpu");
  cpu.Set("name", cpuModelName());
  cpu.Set("totalMemory", hostMemoryBytes());
  cpu.Set("threads", threadCount());
  list.Set(uint32_t(0), cpu);
  for (const cuda::DeviceInfo& d : cuda::listDevices()) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("id", "cuda:" + std::to_string(d.index));
    o.Set("type", "cuda");
    o.Set("index", d.index);
    o.Set("name", d.name);
    o.Set("totalMemory", double(d.totalMemory));
    o.Set("freeMemory", double(d.freeMemory));
    o.Set("computeCapability", std::to_string(d.computeMajor) + "." + std::to_string(d.computeMinor));
    o.Set("multiprocessors", d.multiprocessors);
    list.Set(list.Length(), o);
  }
  return list;
}

// cudaStatus(): { built, available, reason, deviceCount }
Napi::Value CudaStatus(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cuda::Availability a = cuda::availability();
  Napi::Object o = Napi::Object::New(env);
#ifdef LT_WITH_CUDA
  o.Set("built", true);
#else
  o.Set("built", false);
#endif
  o.Set("available", a.available);
  o.Set("deviceCount", a.deviceCount);
  if (!a.available) o.Set("reason", a.reason);
  return o;
}

// memoryUsage(): bytes held by live tensors on the CPU and on CUDA devices.
Napi::Value MemoryUsage(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("cpu", double(LiveBytes::of(Device{Device::Kind::CPU, 0}).load()));
  o.Set("cuda", double(LiveBytes::of(Device{Device::Kind::CUDA, 0}).load()));
  return o;
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "setThreads(count: number)");
  double count = info[0].As<Napi::Number>().DoubleValue();
  if (!(count >= 0 && count <= kMaxThreads) || count != double(int(count)))
    throw Napi::RangeError::New(info.Env(), "setThreads: the thread count must be an integer in [0, " +
                                                std::to_string(kMaxThreads) + "] (0: one per hardware thread)");
  try {
    setThreadCount(int(count));
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), std::string("setThreads: ") + e.what());
  }
  return Napi::Number::New(info.Env(), threadCount());
}

Napi::Value GetThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), threadCount());
}

// synchronize(device): returns once every piece of work queued on the device has run (a CUDA
// device's stream; nothing to wait for on the CPU, whose calls run when made). Throws the error
// of a kernel that failed.
Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsString())
    throw Napi::TypeError::New(info.Env(), "synchronize(device: string), e.g. synchronize(\"cuda:0\")");
  const Device device = parseDevice(info[0].As<Napi::String>().Utf8Value());
  if (!device.isCpu()) {
    if (capturing(device))
      throw Error("synchronize: " + device.name() + " is being captured into a CUDA graph; end the capture first");
    cuda::synchronize(device.index);
  }
  return info.Env().Undefined();
}

}  // namespace

void RegisterDevices(Napi::Env env, Napi::Object exports) {
  exports.Set("devices", Napi::Function::New(env, Devices, "devices"));
  exports.Set("cudaStatus", Napi::Function::New(env, CudaStatus, "cudaStatus"));
  exports.Set("memoryUsage", Napi::Function::New(env, MemoryUsage, "memoryUsage"));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads, "setThreads"));
  exports.Set("getThreads", Napi::Function::New(env, GetThreads, "getThreads"));
  exports.Set("synchronize", Napi::Function::New(env, Synchronize, "synchronize"));
}

}  // namespace lt::addon
