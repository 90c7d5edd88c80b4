// Lazy-ratio binding: the standalone lazyRatio, and the ratio options that prefillAttention's fused
// form reads too. How every binding runs: bindings.h.
#include <napi.h>

#include <algorithm>
#include <cmath>

#include "bindings.h"
#include "cpu/cpu_kernels.h"
#include "dispatch.h"
#include "graph.h"
#include "shared_checks.h"
#include "validate.h"
#ifdef LT_WITH_CUDA
#include "cuda/cuda_kernels.h"
#endif

namespace lt::addon {

// Lazy-ratio options {sink, window, lastQueries} shared by the fused and standalone forms. All
// three are required: their defaults are policy, settled in TypeScript.
LazyRatioSpec readRatioSpec(KernelArgs& a) {
  LazyRatioSpec spec;
  spec.enabled = true;
  spec.sink = a.integer("sink", 0, kMaxDim);
  spec.window = a.integer("window", 1, kMaxDim);
  spec.lastQueries = a.integer("lastQueries", 1, kMaxDim);
  checkRing(a, spec.sink, spec.window);
  return spec;
}

namespace {

PreparedCall prepareLazyRatio(const Napi::CallbackInfo& info, CallMode mode) {
  KernelArgs a("lazyRatio", info, mode);
  TensorObject *q = a.tensor("q"), *k = a.tensor("k"), *lse = a.tensor("lse"), *ratio = a.tensor("out");
  a.expectRank("q", q, 3);
  a.expectRank("k", k, 3);
  a.expectFloat("q", q);
  const int32_t nq = a.narrow("q's tokens", q->shape()[0]), hq = a.narrow("q's heads", q->shape()[1]);
  const int32_t d = a.narrow("q's head dim", q->shape()[2]);
  const int32_t nk = a.narrow("k's tokens", k->shape()[0]), hkv = a.narrow("k's heads", k->shape()[1]);
  if (d > kMaxHeadDim) a.fail("head dim " + std::to_string(d) + " is larger than the supported 256");
  if (k->shape()[2] != d)
    a.fail("k's head dim " + std::to_string(k->shape()[2]) + " differs from q's " + std::to_string(d));
  checkGroup(a, hq, hkv, "k");
  if (nq > nk) a.fail("q has " + std::to_string(nq) + " tokens but k only " + std::to_string(nk) + "; nq <= nk");
  a.expectDType("k", k, q->dtype());
  a.expectShape("lse", lse, {nq, hq});
  a.expectDType("lse", lse, DType::F32);
  a.expectShape("out", ratio, {hq});
  a.expectDType("out", ratio, DType::F32);
  expectApart(a, {{"out", ratio}}, {{"q", q}, {"k", k}, {"lse", lse}});
  Device device = a.sameDevice({{"q", q}, {"k", k}, {"lse", lse}, {"out", ratio}});
  LazyRatioParams p;
  p.spec = readRatioSpec(a);
  const int32_t needed = std::min(p.spec.lastQueries, nk);
  if (nq < needed)
    a.fail("q holds " + std::to_string(nq) + " queries but the last " + std::to_string(needed) + " are needed");
  p.dtype = q->dtype();
  p.q = q->data(), p.k = k->data(), p.lse = static_cast<const float*>(lse->data());
  p.ratio = static_cast<float*>(ratio->data());
  p.nq = nq, p.nk = nk, p.hq = hq, p.hkv = hkv, p.d = d;
  p.scale = float(a.number("scale", 1.0 / std::sqrt(double(d))));

  return dispatchCall(a, device, p, cpu::lazyRatio, LT_CUDA_FN(lazyRatio));
}

}  // namespace

void RegisterLazyRatio(Napi::Env env, Napi::Object exports) {
  exportCall<prepareLazyRatio>(env, exports, "lazyRatio");
}

}  // namespace lt::addon
