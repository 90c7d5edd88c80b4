// Module entry: gives core the CUDA backend's memory, then registers NativeTensor, the ops of
// each family, CUDA graphs, pending reads, and the device and thread queries.
#include <napi.h>

#include "bindings.h"
#include "core/device.h"
#include "cuda/cuda_backend.h"
#include "graph.h"
#include "tensor_object.h"

namespace lt::addon {
namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  installDeviceMemory({cuda::alloc, cuda::free, cuda::copy, cuda::readFile});
  exports.Set("NativeTensor", TensorObject::Init(env));
  RegisterDevices(env, exports);
  RegisterAttention(env, exports);
  RegisterKvCache(env, exports);
  RegisterLazyRatio(env, exports);
  RegisterLayerOps(env, exports);
  RegisterSampling(env, exports);
  RegisterGraphs(env, exports);
  RegisterPendingReads(env, exports);
  RegisterCancel(env, exports);
  return exports;
}

}  // namespace
}  // namespace lt::addon

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  return lt::addon::Init(env, exports);
}
NODE_API_MODULE(lighttransfer, InitModule)
