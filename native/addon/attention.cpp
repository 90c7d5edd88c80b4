// Kernel entry points for JS. Each reads one options object, checks every shape, dtype,
// device and index (throwing a JS Error that says what to fix), fills the kernel's params
// struct, and then runs it either here (sync) or on libuv's pool (async, a Promise).
// Policy — which kernel, which pages, which layers — stays in TypeScript.
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include "core/attention_params.h"
#include "cpu/cpu_kernels.h"
#include "cuda/cuda_backend.h"
#include "dispatch.h"
#include "graph.h"
#include "bindings.h"
#include "validate.h"
#ifdef LT_WITH_CUDA
#include "cuda/cuda_kernels.h"
#endif

namespace lt::addon {
namespace {

constexpr int32_t kMaxDim = std::numeric_limits<int32_t>::max();
constexpr int32_t kMaxHeadDim = 256;


// i32 index tables (page tables, slots) are checked on the host through checkIndices
// (graph.h): now, or on every launch of a graph the call is recorded into. The checks outlive
// the KernelArgs, so they report through failIndex with the op's name.
[[noreturn]] void failIndex(const std::string& op, const std::string& message) { throw Error(op + ": " + message); }

void checkPages(const std::string& op, const char* name, const int32_t* entries, size_t count, int32_t numPages,
                const std::string& where) {
  for (size_t i = 0; i < count; i++) {
    if (entries[i] < 0 || entries[i] >= numPages)
      failIndex(op, std::string(name) + where + " entry " + std::to_string(i) + " is page " + std::to_string(entries[i]) +
                        ", outside the pool's pages 0.." + std::to_string(numPages - 1));
  }
}

// Every slot in [lowest, poolSlots): -1 is allowed where a token may be skipped.
void checkSlots(const std::string& op, const int32_t* slots, int32_t count, int64_t poolSlots, int32_t lowest) {
  for (int32_t t = 0; t < count; t++) {
    if (slots[t] < lowest || slots[t] >= poolSlots)
      failIndex(op, "slots[" + std::to_string(t) + "] = " + std::to_string(slots[t]) + " is outside the pool's slots 0.." +
                        std::to_string(poolSlots - 1) +
                        (lowest < 0 ? " (page * pageSize + offset; -1 skips the token)" : ""));
  }
}

// Kernels compute sink + window (a ring's length) in int32.
void checkRing(const KernelArgs& a, int32_t sink, int32_t window) {
  a.narrow("sink + window", int64_t(sink) + window);
}

// Checks a K/V pair against the page pool they are written into.
void checkPool(KernelArgs& a, TensorObject* kPages, TensorObject* vPages) {
  a.expectRank("kPages", kPages, 4);
  a.expectFloat("kPages", kPages);
  a.expectShape("vPages", vPages, kPages->shape());
  a.expectDType("vPages", vPages, kPages->dtype());
}

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

// The cached prefix of a prefill call (CachedPrefix): the pool must match q, the table must
// cover the slots the prefix occupies, every page used must be in the pool, and a ring needs a
// streaming mask that never reaches a position the ring has overwritten.
CachedPrefix readCachedPrefix(KernelArgs& a, const PrefillAttentionParams& p, DType dtype, int32_t hkv) {
  KernelArgs c = a.object("cached");
  TensorObject *kPages = c.tensor("kPages"), *vPages = c.tensor("vPages"), *table = c.tensor("pageTable");
  checkPool(c, kPages, vPages);
  const Shape& pool = kPages->shape();
  if (pool[2] != hkv || pool[3] != p.d)
    c.fail("kPages holds " + std::to_string(pool[2]) + " kv heads of dim " + std::to_string(pool[3]) + " but the call has " +
           std::to_string(hkv) + " of dim " + std::to_string(p.d) + "; pass the pool of this model's layers");
  c.expectDType("kPages", kPages, dtype);
  c.expectRank("pageTable", table, 1);
  c.expectDType("pageTable", table, DType::I32);
  CachedPrefix prefix;
  prefix.enabled = true;
  prefix.kPages = kPages->data(), prefix.vPages = vPages->data();
  prefix.pageSize = c.narrow("kPages' page size", pool[1]), prefix.numPages = c.narrow("kPages' pages", pool[0]);
  prefix.length = c.integer("length", 0, kMaxDim);
  int64_t slots = prefix.length;
  if (c.has("ringSink") != c.has("ringWindow")) c.fail("ringSink and ringWindow go together: pass both for a ring, neither for a full cache");
  if (c.has("ringSink")) {
    prefix.ring = true;
    prefix.ringSink = c.integer("ringSink", 0, kMaxDim);
    prefix.ringWindow = c.integer("ringWindow", 1, kMaxDim);
    checkRing(c, prefix.ringSink, prefix.ringWindow);
    slots = std::min<int64_t>(slots, int64_t(prefix.ringSink) + prefix.ringWindow);
    if (!p.mask.enabled || p.mask.sink > prefix.ringSink || p.mask.window > prefix.ringWindow)
      c.fail("a ring of sink " + std::to_string(prefix.ringSink) + " and window " + std::to_string(prefix.ringWindow) +
             " holds only its sinks and its last window positions; pass streaming: { sink, window } no larger than the "
             "ring's, or queries would read positions it has overwritten");
  }
  const int64_t pages = (slots + prefix.pageSize - 1) / prefix.pageSize;
  if (table->shape()[0] < pages)
    c.fail("pageTable has " + std::to_string(table->shape()[0]) + " pages but " + std::to_string(slots) +
           " cached slots need " + std::to_string(pages) + " of " + std::to_string(prefix.pageSize) + " slots");
  const auto indices = checkIndices(c, {table}, [op = c.op(), pages, numPages = prefix.numPages](const std::vector<const int32_t*>& t) {
    checkPages(op, "pageTable", t[0], size_t(pages), numPages, "");
  });
  prefix.pageTable = indices[0];
  return prefix;
}

PreparedCall preparePrefill(const Napi::CallbackInfo& info, CallMode mode) {
  KernelArgs a("prefillAttention", info, mode);
  const bool cached = a.has("cached");
  TensorObject *q = a.tensor("q"), *out = a.tensor("out");
  // With a cached prefix every key may come from the pages: own k/v are then optional.
  TensorObject *k = a.tensor("k", cached), *v = a.tensor("v", cached);
  TensorObject *lse = a.tensor("lse", true), *ratio = a.tensor("lazyRatio", true);
  if ((k == nullptr) != (v == nullptr)) a.fail("k and v go together: pass both, or neither when all keys are cached");
  a.expectRank("q", q, 3);
  a.expectFloat("q", q);
  const int32_t nq = a.narrow("q's tokens", q->shape()[0]), hq = a.narrow("q's heads", q->shape()[1]);
  const int32_t d = a.narrow("q's head dim", q->shape()[2]);
  if (d > kMaxHeadDim) a.fail("head dim " + std::to_string(d) + " is larger than the supported 256");
  int32_t own = 0, hkv = 0;
  if (k) {
    a.expectRank("k", k, 3);
    own = a.narrow("k's tokens", k->shape()[0]), hkv = a.narrow("k's heads", k->shape()[1]);
    if (k->shape()[2] != d) a.fail("k's head dim " + std::to_string(k->shape()[2]) + " differs from q's " + std::to_string(d));
    a.expectShape("v", v, k->shape());
    for (auto [name, t] : {std::pair{"k", k}, {"v", v}}) a.expectDType(name, t, q->dtype());
  } else {
    KernelArgs c = a.object("cached");
    TensorObject* kPages = c.tensor("kPages");
    c.expectRank("kPages", kPages, 4);
    hkv = c.narrow("kPages' heads", kPages->shape()[2]);
  }
  if (hkv == 0 || hq % hkv != 0)
    a.fail("q has " + std::to_string(hq) + " heads, not a multiple of the " + std::to_string(hkv) + " kv heads (GQA)");
  a.expectShape("out", out, q->shape());
  a.expectDType("out", out, q->dtype());
  if (lse) a.expectShape("lse", lse, {nq, hq}), a.expectDType("lse", lse, DType::F32);

  PrefillAttentionParams p;
  p.dtype = q->dtype();
  p.q = q->data(), p.out = out->data();
  p.k = k ? k->data() : nullptr, p.v = v ? v->data() : nullptr;
  p.lse = lse ? static_cast<float*>(lse->data()) : nullptr;
  p.hq = hq, p.hkv = hkv, p.d = d;
  if (!a.has("scale")) a.fail("scale is required (the softmax scale, usually 1 / sqrt(head dim))");
  p.scale = float(a.number("scale", 0.0));
  if (a.has("streaming")) {
    KernelArgs s = a.object("streaming");
    p.mask.enabled = true;
    p.mask.sink = s.integer("sink", 0, kMaxDim);
    p.mask.window = s.integer("window", 1, kMaxDim);
    checkRing(s, p.mask.sink, p.mask.window);
  }
  TensorObject *kPages = nullptr, *vPages = nullptr, *table = nullptr;
  if (cached) {
    p.cached = readCachedPrefix(a, p, q->dtype(), hkv);
    KernelArgs c = a.object("cached");
    kPages = c.tensor("kPages"), vPages = c.tensor("vPages"), table = c.tensor("pageTable");
  }
  const int32_t nk = a.narrow("cached length + k's tokens", int64_t(p.cached.length) + own);
  if (nq > nk)
    a.fail("q has " + std::to_string(nq) + " tokens but there are only " + std::to_string(nk) +
           " keys: queries are the last nq positions of the keys, so nq <= nk");
  p.nq = nq, p.nk = nk;
  Device device = a.sameDevice({{"q", q}, {"k", k}, {"v", v}, {"out", out}, {"lse", lse}, {"lazyRatio", ratio},
                                {"cached.kPages", kPages}, {"cached.vPages", vPages}, {"cached.pageTable", table}});
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

PreparedCall prepareAppend(const Napi::CallbackInfo& info, CallMode mode) {
  KernelArgs a("appendKv", info, mode);
  TensorObject *k = a.tensor("k"), *v = a.tensor("v"), *kPages = a.tensor("kPages"), *vPages = a.tensor("vPages");
  TensorObject* slots = a.tensor("slots");
  checkPool(a, kPages, vPages);
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
  const int64_t poolSlots = pool[0] * pool[1];
  const auto indices = checkIndices(a, {slots}, [op = a.op(), tokens, poolSlots](const std::vector<const int32_t*>& c) {
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
  checkPool(a, kPages, vPages);
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
  const auto indices = checkIndices(a, {src, dst}, [op = a.op(), srcPages, dstPages, numPages = p.numPages](const std::vector<const int32_t*>& c) {
    checkPages(op, "srcPageTable", c[0], size_t(srcPages), numPages, "");
    checkPages(op, "dstPageTable", c[1], size_t(dstPages), numPages, "");
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
  const int64_t poolSlots = pool[0] * pool[1];
  const auto indices = checkIndices(a, {slots}, [op = a.op(), length, poolSlots](const std::vector<const int32_t*>& c) {
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
  if (k->shape()[2] != d) a.fail("k's head dim " + std::to_string(k->shape()[2]) + " differs from q's " + std::to_string(d));
  if (hq % hkv != 0)
    a.fail("q has " + std::to_string(hq) + " heads, not a multiple of k's " + std::to_string(hkv) + " kv heads (GQA)");
  if (nq > nk) a.fail("q has " + std::to_string(nq) + " tokens but k only " + std::to_string(nk) + "; nq <= nk");
  a.expectDType("k", k, q->dtype());
  a.expectShape("lse", lse, {nq, hq});
  a.expectDType("lse", lse, DType::F32);
  a.expectShape("out", ratio, {hq});
  a.expectDType("out", ratio, DType::F32);
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

void RegisterKernels(Napi::Env env, Napi::Object exports) {
  exportCall<preparePrefill>(env, exports, "prefillAttention");
  exportCall<prepareDecode>(env, exports, "decodeAttention");
  exportCall<prepareAppend>(env, exports, "appendKv");
  exportCall<prepareCut>(env, exports, "cutToStreaming");
  exportCall<prepareLazyRatio>(env, exports, "lazyRatio");
  exportCall<prepareGather>(env, exports, "gatherKv");
}

}  // namespace lt::addon
