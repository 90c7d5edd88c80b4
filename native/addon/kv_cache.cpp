// KV-cache bindings: appendKv, cutToStreaming, gatherKv and ropeAppendKv (RoPE fused with the
// append) on the page pool. How every binding runs: bindings.h.
#include <napi.h>

#include <algorithm>
#include <vector>

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

// Every slot in [lowest, poolSlots): -1 is allowed where a token may be skipped.
void checkSlots(const std::string& op, const int32_t* slots, int32_t count, int64_t poolSlots, int32_t lowest) {
  for (int32_t t = 0; t < count; t++) {
    if (slots[t] < lowest || slots[t] >= poolSlots)
      failIndex(op, "slots[" + std::to_string(t) + "] = " + std::to_string(slots[t]) +
                        " is outside the pool's slots 0.." + std::to_string(poolSlots - 1) +
                        (lowest < 0 ? " (page * pageSize + offset; -1 skips the token)" : ""));
  }
}

PreparedCall prepareAppend(const Napi::CallbackInfo& info, CallMode mode) {
  KernelArgs a("appendKv", info, mode);
  TensorObject *k = a.tensor("k"), *v = a.tensor("v"), *kPages = a.tensor("kPages"), *vPages = a.tensor("vPages");
  TensorObject* slots = a.tensor("slots");
  checkPoolWritten(a, kPages, vPages);
  a.expectRank("k", k, 3);
  const Shape& pool = kPages->shape();
  const int32_t tokens = a.narrow("k's tokens", k->shape()[0]);
  a.expectShape("k", k, {tokens, pool[2], pool[3]});
  a.expectShape("v", v, k->shape());
  a.expectDType("k", k, kPages->dtype());
  a.expectDType("v", v, kPages->dtype());
  a.expectShape("slots", slots, {tokens});
  a.expectDType("slots", slots, DType::I32);
  Device device = a.sameDevice({{"k", k}, {"v", v}, {"kPages", kPages}, {"vPages", vPages}, {"slots", slots}});
  // The pool is written while k and v are read.
  for (auto [name, t] : {std::pair{"k", k}, {"v", v}})
    if (overlaps(t, kPages) || overlaps(t, vPages))
      a.fail(std::string("the K/V pool overlaps ") + name + ": give " + name + " a tensor of its own");
  const int64_t poolSlots = pool[0] * pool[1];
  const auto indices = checkIndices(a, {slots}, [op = a.op(), tokens, poolSlots](const IndexContents& c) {
    checkSlots(op, c[0], tokens, poolSlots, -1);
  });
  AppendKvParams p;
  p.dtype = k->dtype();
  p.k = k->data(), p.v = v->data(), p.kPages = kPages->data(), p.vPages = vPages->data();
  p.slots = indices[0];
  p.tokens = tokens, p.hkv = a.narrow("kPages' heads", pool[2]), p.d = a.narrow("kPages' head dim", pool[3]);
  p.pageSize = a.narrow("kPages' page size", pool[1]), p.numPages = a.narrow("kPages' pages", pool[0]);

  return dispatchCall(a, device, p, cpu::appendKv, LT_CUDA_FN(appendKv));
}

PreparedCall prepareCut(const Napi::CallbackInfo& info, CallMode mode) {
  KernelArgs a("cutToStreaming", info, mode);
  TensorObject *kPages = a.tensor("kPages"), *vPages = a.tensor("vPages");
  TensorObject *src = a.tensor("srcPageTable"), *dst = a.tensor("dstPageTable");
  checkPoolWritten(a, kPages, vPages);
  a.expectRank("srcPageTable", src, 1);
  a.expectRank("dstPageTable", dst, 1);
  a.expectDType("srcPageTable", src, DType::I32);
  a.expectDType("dstPageTable", dst, DType::I32);
  Device device = a.sameDevice({{"kPages", kPages}, {"vPages", vPages}, {"srcPageTable", src}, {"dstPageTable", dst}});
  const Shape& pool = kPages->shape();
  CutToStreamingParams p;
  p.dtype = kPages->dtype();
  p.kPages = kPages->data(), p.vPages = vPages->data();
  p.length = a.integer("length", 0, kMaxDim);
  p.sink = a.integer("sink", 0, kMaxDim);
  p.window = a.integer("window", 1, kMaxDim);
  checkRing(a, p.sink, p.window);
  p.hkv = a.narrow("kPages' heads", pool[2]), p.d = a.narrow("kPages' head dim", pool[3]);
  p.pageSize = a.narrow("kPages' page size", pool[1]), p.numPages = a.narrow("kPages' pages", pool[0]);
  const int64_t srcPages = (int64_t(p.length) + p.pageSize - 1) / p.pageSize;
  const int64_t ringLen = std::min<int64_t>(p.length, int64_t(p.sink) + p.window);
  const int64_t dstPages = (ringLen + p.pageSize - 1) / p.pageSize;
  if (src->shape()[0] < srcPages)
    a.fail("srcPageTable has " + std::to_string(src->shape()[0]) + " pages but a cache of " + std::to_string(p.length) +
           " tokens needs " + std::to_string(srcPages));
  if (dst->shape()[0] < dstPages)
    a.fail("dstPageTable has " + std::to_string(dst->shape()[0]) + " pages but the ring of " + std::to_string(ringLen) +
           " slots needs " + std::to_string(dstPages));
  const auto indices =
      checkIndices(a, {src, dst}, [op = a.op(), srcPages, dstPages, numPages = p.numPages](const IndexContents& c) {
        checkPages(op, "srcPageTable", c[0], 0, size_t(srcPages), numPages, "");
        checkPages(op, "dstPageTable", c[1], 0, size_t(dstPages), numPages, "");
        // The ring's slots are written in parallel, through a scratch the ring's size: each page once.
        std::vector<bool> taken(size_t(numPages), false);
        for (int64_t i = 0; i < dstPages; i++) {
          if (taken[size_t(c[1][i])])
            failIndex(op, "dstPageTable lists page " + std::to_string(c[1][i]) + " twice (entry " + std::to_string(i) +
                              "); a ring's pages are distinct");
          taken[size_t(c[1][i])] = true;
        }
      });
  p.srcPageTable = indices[0];
  p.dstPageTable = indices[1];

#ifdef LT_WITH_CUDA
  auto onGpu = [device](const CutToStreamingParams& q, cudaStream_t s) {
    CallScratch scratch(device, cuda::cutToStreamingScratchBytes(q));
    cuda::cutToStreaming(q, scratch.get(), s);
  };
#else
  auto onGpu = nullptr;
#endif
  return dispatchCall(a, device, p, cpu::cutToStreaming, onGpu);
}

PreparedCall prepareGather(const Napi::CallbackInfo& info, CallMode mode) {
  KernelArgs a("gatherKv", info, mode);
  TensorObject *kPages = a.tensor("kPages"), *vPages = a.tensor("vPages"), *slots = a.tensor("slots");
  TensorObject *k = a.tensor("k"), *v = a.tensor("v");
  checkPool(a, kPages, vPages);
  a.expectRank("slots", slots, 1);
  a.expectDType("slots", slots, DType::I32);
  const Shape& pool = kPages->shape();
  const int32_t length = a.narrow("slots' length", slots->shape()[0]);
  a.expectShape("k", k, {length, pool[2], pool[3]});
  a.expectShape("v", v, k->shape());
  a.expectDType("k", k, kPages->dtype());
  a.expectDType("v", v, kPages->dtype());
  Device device = a.sameDevice({{"kPages", kPages}, {"vPages", vPages}, {"slots", slots}, {"k", k}, {"v", v}});
  // k and v are written while the pool is read.
  for (auto [name, t] : {std::pair{"k", k}, {"v", v}})
    if (overlaps(t, kPages) || overlaps(t, vPages))
      a.fail(std::string(name) + " overlaps the K/V pool: give " + name + " a tensor of its own");
  if (overlaps(k, v)) a.fail("k overlaps v: give each a tensor of its own");
  const int64_t poolSlots = pool[0] * pool[1];
  const auto indices = checkIndices(a, {slots}, [op = a.op(), length, poolSlots](const IndexContents& c) {
    checkSlots(op, c[0], length, poolSlots, 0);
  });
  GatherKvParams p;
  p.dtype = kPages->dtype();
  p.kPages = kPages->data(), p.vPages = vPages->data(), p.k = k->data(), p.v = v->data();
  p.slots = indices[0];
  p.length = length, p.hkv = a.narrow("kPages' heads", pool[2]), p.d = a.narrow("kPages' head dim", pool[3]);
  p.pageSize = a.narrow("kPages' page size", pool[1]), p.numPages = a.narrow("kPages' pages", pool[0]);

  return dispatchCall(a, device, p, cpu::gatherKv, LT_CUDA_FN(gatherKv));
}

// ropeAppendKv({ qkv, positions, invFreq, kPages, vPages, slots, q }): see RopeAppendKvParams.
PreparedCall prepareRopeAppendKv(const Napi::CallbackInfo& info, CallMode mode) {
  KernelArgs a("ropeAppendKv", info, mode);
  TensorObject *qkv = a.tensor("qkv"), *q = a.tensor("q");
  RopeAppendTarget target = readRopeAppendTarget(a, q, "q");
  RopeAppendKvParams& p = target.params;
  a.expectShape("qkv", qkv, {p.tokens, (int64_t(p.hq) + 2 * p.hkv) * p.d});
  // qkv before q: the JavaScript side makes q in qkv's dtype when it is not given.
  a.expectDType("qkv", qkv, p.dtype);
  a.expectDType("q", q, p.dtype);
  expectApart(a, {{"q", q}, {"kPages", target.kPages}, {"vPages", target.vPages}},
              {{"qkv", qkv}, {"positions", target.positions}, {"invFreq", target.invFreq}, {"slots", target.slots}});
  Device device = a.sameDevice({{"qkv", qkv},
                                {"positions", target.positions},
                                {"invFreq", target.invFreq},
                                {"kPages", target.kPages},
                                {"vPages", target.vPages},
                                {"slots", target.slots},
                                {"q", q}});
  checkRopeAppendSlots(a, target);
  p.qkv = qkv->data();
  return dispatchCall(a, device, p, cpu::ropeAppendKv, LT_CUDA_FN(ropeAppendKv));
}

}  // namespace

RopeAppendTarget readRopeAppendTarget(KernelArgs& a, TensorObject* q, const char* qName) {
  RopeAppendTarget t;
  t.positions = a.tensor("positions"), t.invFreq = a.tensor("invFreq"), t.slots = a.tensor("slots");
  t.kPages = a.tensor("kPages"), t.vPages = a.tensor("vPages");
  checkPoolWritten(a, t.kPages, t.vPages);
  const Shape& pool = t.kPages->shape();
  const int64_t hkv = pool[2], d = pool[3];
  if (d % 2) a.fail("head dim must be even for rotary embedding, got " + std::to_string(d));
  a.expectRank(qName, q, 3);
  const int64_t tokens = q->shape()[0], hq = q->shape()[1];
  a.expectShape(qName, q, {tokens, hq, d});
  a.expectShape("positions", t.positions, {tokens});
  a.expectDType("positions", t.positions, DType::I32);
  a.expectShape("slots", t.slots, {tokens});
  a.expectDType("slots", t.slots, DType::I32);
  a.expectShape("invFreq", t.invFreq, {d / 2});
  a.expectDType("invFreq", t.invFreq, DType::F32);
  RopeAppendKvParams& p = t.params;
  p.dtype = t.kPages->dtype();
  p.q = q->data(), p.kPages = t.kPages->data(), p.vPages = t.vPages->data();
  p.positions = static_cast<const int32_t*>(t.positions->data());
  p.invFreq = static_cast<const float*>(t.invFreq->data());
  p.tokens = a.narrow("q's tokens", tokens), p.hq = a.narrow("q's heads", hq), p.hkv = a.narrow("kPages' heads", hkv);
  p.d = a.narrow("head dim", d);
  p.pageSize = a.narrow("kPages' page size", pool[1]), p.numPages = a.narrow("kPages' pages", pool[0]);
  return t;
}

void checkRopeAppendSlots(KernelArgs& a, RopeAppendTarget& t) {
  const int64_t poolSlots = int64_t(t.params.numPages) * t.params.pageSize;
  const auto indices =
      checkIndices(a, {t.slots}, [op = a.op(), tokens = t.params.tokens, poolSlots](const IndexContents& c) {
        checkSlots(op, c[0], tokens, poolSlots, -1);
      });
  t.params.slots = indices[0];
}

void RegisterKvCache(Napi::Env env, Napi::Object exports) {
  exportCall<prepareAppend>(env, exports, "appendKv");
  exportCall<prepareCut>(env, exports, "cutToStreaming");
  exportCall<prepareGather>(env, exports, "gatherKv");
  exportCall<prepareRopeAppendKv>(env, exports, "ropeAppendKv");
}

}  // namespace lt::addon
