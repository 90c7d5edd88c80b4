// Attention bindings: prefillAttention (causal or streaming, LSE, fused lazy ratio) and paged
// decodeAttention. How every binding runs: bindings.h.
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <memory>
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

// The cached prefix of a prefill call (CachedPrefix): the pool must match q, the table must
// cover the slots the prefix occupies, every page used must be in the pool, and a ring needs a
// streaming mask that never reaches a position the ring has overwritten.
CachedPrefix readCachedPrefix(KernelArgs& a, const PrefillAttentionParams& p, DType dtype, int32_t hkv) {
  KernelArgs c = a.object("cached");
  TensorObject *kPages = c.tensor("kPages"), *vPages = c.tensor("vPages"), *table = c.tensor("pageTable");
  checkPool(c, kPages, vPages);
  const Shape& pool = kPages->shape();
  if (pool[2] != hkv || pool[3] != p.d)
    c.fail("kPages holds " + std::to_string(pool[2]) + " kv heads of dim " + std::to_string(pool[3]) +
           " but the call has " + std::to_string(hkv) + " of dim " + std::to_string(p.d) +
           "; pass the pool of this model's layers");
  c.expectDType("kPages", kPages, dtype);
  c.expectRank("pageTable", table, 1);
  c.expectDType("pageTable", table, DType::I32);
  CachedPrefix prefix;
  prefix.enabled = true;
  prefix.kPages = kPages->data(), prefix.vPages = vPages->data();
  prefix.pageSize = c.narrow("kPages' page size", pool[1]), prefix.numPages = c.narrow("kPages' pages", pool[0]);
  prefix.length = c.integer("length", 0, kMaxDim);
  int64_t slots = prefix.length;
  if (c.has("ringSink") != c.has("ringWindow"))
    c.fail("ringSink and ringWindow go together: pass both for a ring, neither for a full cache");
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
  const auto indices =
      checkIndices(c, {table}, [op = c.op(), pages, numPages = prefix.numPages](const IndexContents& t) {
        checkPages(op, "pageTable", t[0], 0, size_t(pages), numPages, "");
      });
  prefix.pageTable = indices[0];
  return prefix;
}

// The CUDA kernel a prefill call asks for (absent: Unspecified); the CUDA side checks that the
// device can run it, the CPU ignores it.
PrefillKernel prefillKernel(const Napi::Value& value, const std::string& op) {
  if (value.IsUndefined()) return PrefillKernel::Unspecified;
  return parsePrefillKernel(value.IsString() ? value.As<Napi::String>().Utf8Value() : "", op + ": kernel");
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
    if (k->shape()[2] != d)
      a.fail("k's head dim " + std::to_string(k->shape()[2]) + " differs from q's " + std::to_string(d));
    a.expectShape("v", v, k->shape());
    for (auto [name, t] : {std::pair{"k", k}, {"v", v}}) a.expectDType(name, t, q->dtype());
  } else {
    KernelArgs c = a.object("cached");
    TensorObject* kPages = c.tensor("kPages");
    c.expectRank("kPages", kPages, 4);
    hkv = c.narrow("kPages' heads", kPages->shape()[2]);
  }
  checkGroup(a, hq, hkv, "the keys");
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
  if (p.cached.ring && int64_t(p.cached.length) > int64_t(p.cached.ringSink) + p.cached.ringWindow) {
    // Past its sinks a ring that has turned holds only its last window; the first query's window
    // must start within it (the queries of a prefill are its own tokens, which the mask keeps
    // within the ring's window).
    const int64_t held = int64_t(p.cached.length) - p.cached.ringWindow, first = int64_t(nk) - nq;
    if (first - p.mask.window + 1 < held)
      a.fail("q's first token is position " + std::to_string(first) + ", whose window starts at " +
             std::to_string(first - p.mask.window + 1) + ", but the ring holds positions from " + std::to_string(held) +
             " on (besides its sinks); pass at most " +
             std::to_string(std::max<int64_t>(0, nk - (held + p.mask.window - 1))) + " queries");
  }
  expectApart(a, {{"out", out}, {"lse", lse}, {"lazyRatio", ratio}},
              {{"q", q},
               {"k", k},
               {"v", v},
               {"cached.kPages", kPages},
               {"cached.vPages", vPages},
               {"cached.pageTable", table}});
  Device device = a.sameDevice({{"q", q},
                                {"k", k},
                                {"v", v},
                                {"out", out},
                                {"lse", lse},
                                {"lazyRatio", ratio},
                                {"cached.kPages", kPages},
                                {"cached.vPages", vPages},
                                {"cached.pageTable", table}});
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

  p.kernel = prefillKernel(a.value("kernel"), a.op());

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
  const int32_t numPages = a.narrow("kPages' pages", kPages->shape()[0]),
                pageSize = a.narrow("kPages' page size", kPages->shape()[1]);
  const int32_t hkv = a.narrow("kPages' heads", kPages->shape()[2]);
  if (d > kMaxHeadDim) a.fail("head dim " + std::to_string(d) + " is larger than the supported 256");
  if (kPages->shape()[3] != d)
    a.fail("kPages' head dim " + std::to_string(kPages->shape()[3]) + " differs from q's " + std::to_string(d));
  checkGroup(a, hq, hkv, "the pool");
  a.expectShape("vPages", vPages, kPages->shape());
  a.expectShape("out", out, q->shape());
  for (auto [name, t] : {std::pair{"kPages", kPages}, {"vPages", vPages}, {"out", out}})
    a.expectDType(name, t, q->dtype());
  if (table->shape()[0] != batch)
    a.fail("pageTable has " + std::to_string(table->shape()[0]) + " rows but q has " + std::to_string(batch) +
           " sequences");
  a.expectDType("pageTable", table, DType::I32);
  a.expectShape("seqLens", lens, {batch});
  a.expectDType("seqLens", lens, DType::I32);
  if (lse) a.expectShape("lse", lse, {batch, hq}), a.expectDType("lse", lse, DType::F32);
  expectApart(a, {{"out", out}, {"lse", lse}},
              {{"q", q}, {"kPages", kPages}, {"vPages", vPages}, {"pageTable", table}, {"seqLens", lens}});
  Device device = a.sameDevice({{"q", q},
                                {"kPages", kPages},
                                {"vPages", vPages},
                                {"pageTable", table},
                                {"seqLens", lens},
                                {"out", out},
                                {"lse", lse}});
  const int32_t maxPages = a.narrow("pageTable's columns", table->shape()[1]);
  a.narrow("pageTable's entries", numel(table->shape()));
  // Per table row, how many of its first entries were found to be pages and have not changed
  // since. A graph's launch then checks a row from its first changed entry, or from where its
  // sequence grew past them: checking every used entry on every launch held large batches'
  // steps back (bench/README.md, "Model decode", the thirty-second session).
  auto checkedPages = std::make_shared<std::vector<size_t>>(size_t(batch), 0);
  const auto indices = checkIndices(
      a, {lens, table}, [op = a.op(), batch, maxPages, pageSize, numPages, checkedPages](const IndexContents& c) {
        const int32_t *hostLens = c[0], *hostTable = c[1];
        std::vector<size_t>& checked = *checkedPages;
        const size_t rowSize = size_t(maxPages);
        for (auto [start, count] : c.changed[1])
          for (size_t row = start / rowSize; row * rowSize < start + count; row++)
            checked[row] = std::min(checked[row], std::max(start, row * rowSize) - row * rowSize);
        for (int32_t b = 0; b < batch; b++) {
          const int64_t capacity = int64_t(maxPages) * pageSize;
          if (hostLens[b] < 0 || hostLens[b] > capacity)
            failIndex(op, "seqLens[" + std::to_string(b) + "] = " + std::to_string(hostLens[b]) + " is outside 0.." +
                              std::to_string(capacity) + " (pageTable columns × pageSize)");
          const size_t used = size_t((int64_t(hostLens[b]) + pageSize - 1) / pageSize);
          if (used <= checked[b]) continue;
          checkPages(op, "pageTable", &hostTable[size_t(b) * maxPages], checked[b], used, numPages,
                     "[" + std::to_string(b) + "]");
          checked[b] = used;
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
