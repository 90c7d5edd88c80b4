// Attention bindings: prefillAttention (causal or streaming, LSE, fused lazy ratio) and paged
// decodeAttention. How every binding runs: bindings.h.
#include <napi.h>

#include <algorithm>
#include <cmath>

#include "bindings.h"
#include "cpu/cpu_kernels.h"
#include "cuda/cuda_backend.h"
#include "dispatch.h"
#include "graph.h"
#include "shared_checks.h"
#include "validate.h"
#ifdef LT_WITH_CUDA
#include "cuda/cuda_kernels.h"
#endif

namespace lt::addon {
namespace {

PreparedCall preparePrefill(const Napi::CallbackInfo& info, CallMode mode) {
  KernelArgs a("prefillAttention", info, mode);
  TensorObject *q = a.tensor("q"), *k = a.tensor("k"), *v = a.tensor("v"), *out = a.tensor("out");
  TensorObject *lse = a.tensor("lse", true), *ratio = a.tensor("lazyRatio", true);
  a.expectRank("q", q, 3);
  a.expectRank("k", k, 3);
  a.expectFloat("q", q);
  const int32_t nq = a.narrow("q's tokens", q->shape()[0]), hq = a.narrow("q's heads", q->shape()[1]);
  const int32_t d = a.narrow("q's head dim", q->shape()[2]);
  const int32_t nk = a.narrow("k's tokens", k->shape()[0]), hkv = a.narrow("k's heads", k->shape()[1]);
  if (d > kMaxHeadDim) a.fail("head dim " + std::to_string(d) + " is larger than the supported 256");
  if (k->shape()[2] != d) a.fail("k's head dim " + std::to_string(k->shape()[2]) + " differs from q's " + std::to_string(d));
  if (hq % hkv != 0)
    a.fail("q has " + std::to_string(hq) + " heads, not a multiple of k's " + std::to_string(hkv) + " kv heads (GQA)");
  if (nq > nk)
    a.fail("q has " + std::to_string(nq) + " tokens but k only " + std::to_string(nk) +
           ": queries are the last nq positions of the keys, so nq <= nk");
  a.expectShape("v", v, k->shape());
  a.expectShape("out", out, q->shape());
  for (auto [name, t] : {std::pair{"k", k}, {"v", v}, {"out", out}}) a.expectDType(name, t, q->dtype());
  if (lse) a.expectShape("lse", lse, {nq, hq}), a.expectDType("lse", lse, DType::F32);
  Device device = a.sameDevice({{"q", q}, {"k", k}, {"v", v}, {"out", out}, {"lse", lse}, {"lazyRatio", ratio}});

  PrefillAttentionParams p;
  p.dtype = q->dtype();
  p.q = q->data(), p.k = k->data(), p.v = v->data(), p.out = out->data();
  p.lse = lse ? static_cast<float*>(lse->data()) : nullptr;
  p.nq = nq, p.nk = nk, p.hq = hq, p.hkv = hkv, p.d = d;
  p.scale = float(a.number("scale", 1.0 / std::sqrt(double(d))));
  if (a.has("streaming")) {
    KernelArgs s = a.object("streaming");
    p.mask.enabled = true;
    p.mask.sink = s.integer("sink", 0, kMaxDim);
    p.mask.window = s.integer("window", 1, kMaxDim);
    checkRing(s, p.mask.sink, p.mask.window);
  }
  if (ratio) {
    if (!a.has("ratio")) a.fail("lazyRatio output needs ratio options {sink, window, lastQueries}");
    KernelArgs r = a.object("ratio");
    p.ratio = readRatioSpec(r);
    a.expectShape("lazyRatio", ratio, {hq});
    a.expectDType("lazyRatio", ratio, DType::F32);
    const int32_t needed = std::min(p.ratio.lastQueries, nk);
    if (nq < needed)
      a.fail("the lazy ratio needs the last " + std::to_string(needed) + " queries in this call, but q has only " +
             std::to_string(nq) + "; compute it on the final chunk, which must hold at least lastQueries tokens");
    p.lazyRatio = static_cast<float*>(ratio->data());
  }

  return dispatchCall(a, device, p, cpu::prefillAttention, LT_CUDA_FN(prefillAttention));
}

PreparedCall prepareDecode(const Napi::CallbackInfo& info, CallMode mode) {
  KernelArgs a("decodeAttention", info, mode);
  TensorObject *q = a.tensor("q"), *kPages = a.tensor("kPages"), *vPages = a.tensor("vPages");
  TensorObject *table = a.tensor("pageTable"), *lens = a.tensor("seqLens"), *out = a.tensor("out");
  TensorObject* lse = a.tensor("lse", true);
  a.expectRank("q", q, 3);
  a.expectFloat("q", q);
  a.expectRank("kPages", kPages, 4);
  a.expectRank("pageTable", table, 2);
  const int32_t batch = a.narrow("q's batch", q->shape()[0]), hq = a.narrow("q's heads", q->shape()[1]);
  const int32_t d = a.narrow("q's head dim", q->shape()[2]);
  const int32_t numPages = a.narrow("kPages' pages", kPages->shape()[0]), pageSize = a.narrow("kPages' page size", kPages->shape()[1]);
  const int32_t hkv = a.narrow("kPages' heads", kPages->shape()[2]);
  if (d > kMaxHeadDim) a.fail("head dim " + std::to_string(d) + " is larger than the supported 256");
  if (kPages->shape()[3] != d)
    a.fail("kPages' head dim " + std::to_string(kPages->shape()[3]) + " differs from q's " + std::to_string(d));
  if (hq % hkv != 0)
    a.fail("q has " + std::to_string(hq) + " heads, not a multiple of the pool's " + std::to_string(hkv) + " kv heads");
  a.expectShape("vPages", vPages, kPages->shape());
  a.expectShape("out", out, q->shape());
  for (auto [name, t] : {std::pair{"kPages", kPages}, {"vPages", vPages}, {"out", out}}) a.expectDType(name, t, q->dtype());
  if (table->shape()[0] != batch)
    a.fail("pageTable has " + std::to_string(table->shape()[0]) + " rows but q has " + std::to_string(batch) + " sequences");
  a.expectDType("pageTable", table, DType::I32);
  a.expectShape("seqLens", lens, {batch});
  a.expectDType("seqLens", lens, DType::I32);
  if (lse) a.expectShape("lse", lse, {batch, hq}), a.expectDType("lse", lse, DType::F32);
  Device device = a.sameDevice({{"q", q}, {"kPages", kPages}, {"vPages", vPages}, {"pageTable", table},
                                {"seqLens", lens}, {"out", out}, {"lse", lse}});
  const int32_t maxPages = a.narrow("pageTable's columns", table->shape()[1]);
  a.narrow("pageTable's entries", numel(table->shape()));
  const auto indices = checkIndices(a, {lens, table}, [op = a.op(), batch, maxPages, pageSize, numPages](const std::vector<const int32_t*>& c) {
    const int32_t *hostLens = c[0], *hostTable = c[1];
    for (int32_t b = 0; b < batch; b++) {
      const int64_t capacity = int64_t(maxPages) * pageSize;
      if (hostLens[b] < 0 || hostLens[b] > capacity)
        failIndex(op, "seqLens[" + std::to_string(b) + "] = " + std::to_string(hostLens[b]) + " is outside 0.." +
                          std::to_string(capacity) + " (pageTable columns × pageSize)");
      const size_t used = size_t((hostLens[b] + pageSize - 1) / pageSize);
      checkPages(op, "pageTable", &hostTable[size_t(b) * maxPages], used, numPages, "[" + std::to_string(b) + "]");
    }
  });

  DecodeAttentionParams p;
  p.dtype = q->dtype();
  p.q = q->data(), p.kPages = kPages->data(), p.vPages = vPages->data();
  p.seqLens = indices[0];
  p.pageTable = indices[1];
  p.out = out->data();
  p.lse = lse ? static_cast<float*>(lse->data()) : nullptr;
  p.batch = batch, p.hq = hq, p.hkv = hkv, p.d = d;
  p.pageSize = pageSize, p.numPages = numPages, p.maxPagesPerSeq = maxPages;
  p.scale = float(a.number("scale", 1.0 / std::sqrt(double(d))));

#ifdef LT_WITH_CUDA
  auto onGpu = [device](const DecodeAttentionParams& q, cudaStream_t s) {
    const int sms = cuda::multiprocessors(device.index);
    const size_t bytes = cuda::decodeAttentionWorkspaceBytes(q, sms);
    CallScratch workspace(device, bytes);
    cuda::decodeAttention(q, workspace.get(), bytes, sms, s);
  };
#else
  auto onGpu = nullptr;
#endif
  return dispatchCall(a, device, p, cpu::decodeAttention, onGpu);
}

}  // namespace

void RegisterAttention(Napi::Env env, Napi::Object exports) {
  exportCall<preparePrefill>(env, exports, "prefillAttention");
  exportCall<prepareDecode>(env, exports, "decodeAttention");
}

}  // namespace lt::addon
