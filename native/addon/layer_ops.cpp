// Layer-op bindings: linear, rmsNorm, rope, swiGlu and embedding, and gemmBackend() (which GEMM
// linear runs on). How every binding runs: bindings.h.
#include <napi.h>

#include <algorithm>
#include <array>

#include <memory>
#include <vector>

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
namespace {

// A gemm choice as given (empty when absent), checked against the known ones on every device, so
// that a bad choice does not pass on the CPU (which has one GEMM); gemmRequest parses it.
std::string gemmChoice(const Napi::Value& value, const std::string& op) {
  if (value.IsUndefined()) return "";
  const std::array<const char*, 6> known = {"auto", "cublasLt", "gemv", "gemv-only", "cublas", "fallback"};
  // The list, for a message: made only when a call is refused.
  const auto choices = [&] {
    std::string list;
    for (size_t i = 0; i < known.size(); i++)
      list += (i == 0 ? "" : i + 1 == known.size() ? " or " : ", ") + std::string(known[i]);
    return list;
  };
  if (!value.IsString()) throw Error(op + ": gemm must be a string: " + choices());
  const std::string gemm = value.As<Napi::String>().Utf8Value();
  if (std::find(known.begin(), known.end(), gemm) == known.end())
    throw Error(op + ": gemm must be " + choices() + ", not '" + gemm + "'");
  return gemm;
}

PreparedCall prepareLinear(const Napi::CallbackInfo& info, CallMode mode) {
  KernelArgs a("linear", info, mode);
  TensorObject *x = a.tensor("x"), *w = a.tensor("weight"), *bias = a.tensor("bias", true), *y = a.tensor("out");
  TensorObject* norm = nullptr;
  float eps = 0.f;
  if (a.has("norm")) {
    KernelArgs normArgs = a.object("norm");
    norm = normArgs.tensor("weight");
    if (!normArgs.has("eps")) normArgs.fail("eps is required (RMSNorm's epsilon, as the model's config gives it)");
    eps = float(normArgs.number("eps", 0.0));
  }
  const bool swiGlu = a.flag("swiGlu"), swiGluOutput = a.flag("swiGluOutput"), accumulate = a.flag("accumulate");
  const bool rope = a.has("ropeAppendKv");
  a.expectRank("weight", w, 2);
  a.expectFloat("x", x);
  a.expectFloat("weight", w);
  if (norm && swiGlu) a.fail("norm and swiGlu are two different input transforms: give one of them");
  const int64_t n = w->shape()[0], k = w->shape()[1];
  const int64_t columns = swiGlu ? 2 * k : k;
  if (x->shape().empty() || x->shape().back() != columns)
    a.fail("x's last dimension must be " + std::string(swiGlu ? "twice " : "") + "the weight's input size " +
           std::to_string(k) + (swiGlu ? " ([gate, up])" : "") + ", got shape " + shapeString(x->shape()));
  const int64_t m = numel(x->shape()) / columns;
  if (swiGluOutput && n % 2 != 0)
    a.fail("swiGluOutput needs the weight's rows to hold [gate, up], an even number of them; got " + std::to_string(n));
  if (swiGluOutput && accumulate)
    a.fail("swiGluOutput and accumulate cannot be combined: give out the SwiGLU and add it in a call of its own");
  if (rope && (swiGluOutput || accumulate))
    a.fail("ropeAppendKv cannot be combined with swiGluOutput or accumulate: its output is the rotated q and the pool");
  // With ropeAppendKv, out is q [tokens, hq, d] and the weight's rows are the q|k|v heads.
  RopeAppendTarget target;
  std::unique_ptr<KernelArgs> ropeArgs;
  if (rope) {
    ropeArgs = std::make_unique<KernelArgs>(a.object("ropeAppendKv"));
    target = readRopeAppendTarget(*ropeArgs, y, "out (q)");
    const RopeAppendKvParams& r = target.params;
    if (x->shape().size() != 2 || x->shape()[0] != r.tokens)
      a.fail("with ropeAppendKv, x must be [tokens, " + std::to_string(columns) + "] with a row per token of out (" +
             std::to_string(r.tokens) + "), got shape " + shapeString(x->shape()));
    if (n != (int64_t(r.hq) + 2 * r.hkv) * r.d)
      a.fail("with ropeAppendKv, the weight's rows must be the q|k|v heads, (hq + 2 hkv) · d = " +
             std::to_string((int64_t(r.hq) + 2 * r.hkv) * r.d) + " (hq from out, hkv and d from kPages), got " +
             std::to_string(n));
    a.expectDType("out", y, x->dtype());
    ropeArgs->expectDType("kPages", target.kPages, x->dtype());
  } else {
    Shape yShape = x->shape();
    yShape.back() = swiGluOutput ? n / 2 : n;
    a.expectShape("out", y, yShape);
    a.expectDType("out", y, x->dtype());
  }
  if (bias) a.expectShape("bias", bias, {n}), a.expectDType("bias", bias, w->dtype());
  if (norm) a.expectShape("norm.weight", norm, {k}), a.expectDType("norm.weight", norm, w->dtype());
  std::vector<std::pair<const char*, TensorObject*>> all = {
      {"x", x}, {"weight", w}, {"bias", bias}, {"norm.weight", norm}, {"out", y}};
  if (rope)
    all.insert(all.end(), {{"ropeAppendKv.positions", target.positions},
                           {"ropeAppendKv.invFreq", target.invFreq},
                           {"ropeAppendKv.kPages", target.kPages},
                           {"ropeAppendKv.vPages", target.vPages},
                           {"ropeAppendKv.slots", target.slots}});
  Device device = a.sameDevice(all);
  // out is written while the others are read. On the CPU, x is read whole before out is
  // written, so a plain product may go into its own input; nothing else may share out's bytes.
  for (auto [name, input] : {std::pair{"weight", w}, {"bias", bias}, {"norm.weight", norm}})
    if (input && overlaps(input, y)) a.fail(std::string("out overlaps ") + name + ": give out a tensor of its own");
  if (rope) {
    // The pool is written while x, the weights and out's other rows are still in use.
    for (auto [name, t] : {std::pair{"x", x}, {"weight", w}, {"bias", bias}, {"norm.weight", norm}, {"out", y}})
      if (t && (overlaps(t, target.kPages) || overlaps(t, target.vPages)))
        a.fail(std::string("the K/V pool overlaps ") + name + ": give the pool tensors of their own");
    checkRopeAppendSlots(*ropeArgs, target);
  }
  if (overlaps(x, y) && (norm || swiGlu || swiGluOutput || rope || accumulate || !device.isCpu()))
    a.fail(std::string("out overlaps x, which only a plain product on the CPU allows") +
           (device.isCpu() ? " (not with norm, swiGlu, swiGluOutput, ropeAppendKv or accumulate)" : "") +
           ": give out a tensor of its own");
  LinearParams p;
  p.xType = x->dtype(), p.wType = w->dtype();
  p.x = x->data(), p.w = w->data(), p.bias = bias ? bias->data() : nullptr, p.y = y->data();
  p.m = a.narrow("x's rows", m), p.n = a.narrow("weight's rows", n), p.k = a.narrow("weight's columns", k);
  p.input = norm ? LinearInput::RmsNorm : swiGlu ? LinearInput::SwiGlu : LinearInput::Plain;
  p.norm = norm ? norm->data() : nullptr;
  p.eps = eps;
  p.output = rope ? LinearOutput::RopeAppendKv : swiGluOutput ? LinearOutput::SwiGlu : LinearOutput::Plain;
  if (rope) p.rope = target.params;
  p.accumulate = accumulate;
  p.constantWeight = a.flag("constantWeight");
  const std::string gemm = gemmChoice(a.value("gemm"), a.op());
#ifdef LT_WITH_CUDA
  const cuda::GemmRequest request = device.isCpu() ? cuda::GemmRequest::Library : cuda::gemmRequest(gemm);
  auto onGpu = [device, request](const LinearParams& q, cudaStream_t s) {
    const cuda::LinearPlan plan = cuda::planLinear(q, request);
    CallScratch scratch(device, plan.scratchBytes);
    cuda::linear(q, plan, scratch.get(), s);
  };
#else
  auto onGpu = nullptr;
#endif
  return dispatchCall(a, device, p, cpu::linear, onGpu);
}

PreparedCall prepareRmsNorm(const Napi::CallbackInfo& info, CallMode mode) {
  KernelArgs a("rmsNorm", info, mode);
  TensorObject *x = a.tensor("x"), *w = a.tensor("weight"), *res = a.tensor("residual", true), *y = a.tensor("out");
  a.expectRank("weight", w, 1);
  a.expectFloat("x", x);
  a.expectFloat("weight", w);
  const int64_t dim = w->shape()[0];
  if (x->shape().back() != dim)
    a.fail("x's last dimension must be the weight's size " + std::to_string(dim) + ", got shape " +
           shapeString(x->shape()));
  a.expectShape("out", y, x->shape());
  a.expectDType("out", y, x->dtype());
  if (res) {
    a.expectShape("residual", res, x->shape());
    a.expectDType("residual", res, x->dtype());
    if (y->data() == x->data()) a.fail("out may not be x itself when a residual is given");
  }
  // The residual is updated in place and out written from it; each row is read whole before it is
  // written, so out may be x itself (in place, without a residual), but not part of it.
  const bool inPlace = y->data() == x->data();
  expectApart(a, {{"residual", res}, {"out", y}}, {{"x", inPlace ? nullptr : x}, {"weight", w}});
  Device device = a.sameDevice({{"x", x}, {"weight", w}, {"residual", res}, {"out", y}});
  RmsNormParams p;
  p.xType = x->dtype(), p.wType = w->dtype();
  p.x = x->data(), p.residual = res ? res->data() : nullptr, p.weight = w->data(), p.y = y->data();
  p.rows = a.narrow("x's rows", numel(x->shape()) / dim), p.dim = a.narrow("x's last dimension", dim);
  p.eps = float(a.number("eps", 1e-5));
  return dispatchCall(a, device, p, cpu::rmsNorm, LT_CUDA_FN(rmsNorm));
}

PreparedCall prepareRope(const Napi::CallbackInfo& info, CallMode mode) {
  KernelArgs a("rope", info, mode);
  TensorObject *q = a.tensor("q"), *k = a.tensor("k"), *pos = a.tensor("positions"), *freq = a.tensor("invFreq");
  a.expectRank("q", q, 3);
  a.expectRank("k", k, 3);
  a.expectFloat("q", q);
  a.expectDType("k", k, q->dtype());
  const int64_t tokens = q->shape()[0], d = q->shape()[2];
  if (d % 2) a.fail("head dim must be even for rotary embedding, got " + std::to_string(d));
  if (k->shape()[0] != tokens || k->shape()[2] != d)
    a.fail("k must be [" + std::to_string(tokens) + ", hkv, " + std::to_string(d) + "], got " +
           shapeString(k->shape()));
  a.expectShape("positions", pos, {tokens});
  a.expectDType("positions", pos, DType::I32);
  a.expectShape("invFreq", freq, {d / 2});
  a.expectDType("invFreq", freq, DType::F32);
  expectApart(a, {{"q", q}, {"k", k}}, {{"positions", pos}, {"invFreq", freq}});
  Device device = a.sameDevice({{"q", q}, {"k", k}, {"positions", pos}, {"invFreq", freq}});
  RopeParams p;
  p.dtype = q->dtype();
  p.q = q->data(), p.k = k->data();
  p.positions = static_cast<const int32_t*>(pos->data());
  p.invFreq = static_cast<const float*>(freq->data());
  p.tokens = a.narrow("q's tokens", tokens), p.hq = a.narrow("q's heads", q->shape()[1]);
  p.hkv = a.narrow("k's heads", k->shape()[1]), p.d = a.narrow("head dim", d);
  return dispatchCall(a, device, p, cpu::rope, LT_CUDA_FN(rope));
}

PreparedCall prepareSwiGlu(const Napi::CallbackInfo& info, CallMode mode) {
  KernelArgs a("swiGlu", info, mode);
  TensorObject *x = a.tensor("x"), *y = a.tensor("out");
  a.expectFloat("x", x);
  const int64_t width = x->shape().back();
  if (width % 2) a.fail("x's last dimension holds [gate, up] and must be even, got " + std::to_string(width));
  Shape yShape = x->shape();
  yShape.back() = width / 2;
  a.expectShape("out", y, yShape);
  a.expectDType("out", y, x->dtype());
  expectApart(a, {{"out", y}}, {{"x", x}});
  Device device = a.sameDevice({{"x", x}, {"out", y}});
  SwiGluParams p;
  p.dtype = x->dtype();
  p.x = x->data(), p.y = y->data();
  p.rows = a.narrow("x's rows", numel(x->shape()) / width), p.inner = a.narrow("out's last dimension", width / 2);
  return dispatchCall(a, device, p, cpu::swiGlu, LT_CUDA_FN(swiGlu));
}

PreparedCall prepareEmbedding(const Napi::CallbackInfo& info, CallMode mode) {
  KernelArgs a("embedding", info, mode);
  TensorObject *ids = a.tensor("ids"), *table = a.tensor("table"), *y = a.tensor("out");
  a.expectRank("ids", ids, 1);
  a.expectDType("ids", ids, DType::I32);
  a.expectRank("table", table, 2);
  a.expectFloat("table", table);
  const int64_t tokens = ids->shape()[0], vocab = table->shape()[0], dim = table->shape()[1];
  a.expectShape("out", y, {tokens, dim});
  a.expectFloat("out", y);
  expectApart(a, {{"out", y}}, {{"ids", ids}, {"table", table}});
  Device device = a.sameDevice({{"ids", ids}, {"table", table}, {"out", y}});
  const auto indices = checkIndices(a, {ids}, [op = a.op(), tokens, vocab](const IndexContents& c) {
    for (int64_t t = 0; t < tokens; t++) checkTokenId(op, "ids", t, c[0][t], vocab);
  });
  EmbeddingParams p;
  p.tableType = table->dtype(), p.yType = y->dtype();
  p.ids = indices[0], p.table = table->data(), p.y = y->data();
  p.tokens = a.narrow("ids' length", tokens), p.dim = a.narrow("table's columns", dim),
  p.vocab = a.narrow("table's rows", vocab);
  return dispatchCall(a, device, p, cpu::embedding, LT_CUDA_FN(embedding));
}

}  // namespace

void RegisterLayerOps(Napi::Env env, Napi::Object exports) {
  exportCall<prepareLinear>(env, exports, "linear");
  exportCall<prepareRmsNorm>(env, exports, "rmsNorm");
  exportCall<prepareRope>(env, exports, "rope");
  exportCall<prepareSwiGlu>(env, exports, "swiGlu");
  exportCall<prepareEmbedding>(env, exports, "embedding");
#ifdef LT_WITH_CUDA
  exports.Set("gemmBackend", Napi::Function::New(
                                 env,
                                 [](const Napi::CallbackInfo& info) -> Napi::Value {
                                   Napi::Object o = Napi::Object::New(info.Env());
                                   if (!cuda::availability().available) return info.Env().Null();
                                   const std::string gemm =
                                       gemmChoice(info.Length() > 0 ? info[0] : info.Env().Undefined(), "gemmBackend");
                                   cuda::GemmBackend b = cuda::gemmBackend(cuda::gemmRequest(gemm));
                                   o.Set("name", b.name);
                                   o.Set("detail", b.detail);
                                   return o;
                                 },
                                 "gemmBackend"));
#else
  exports.Set("gemmBackend",
              Napi::Function::New(
                  env, [](const Napi::CallbackInfo& info) -> Napi::Value { return info.Env().Null(); }, "gemmBackend"));
#endif
}

}  // namespace lt::addon
