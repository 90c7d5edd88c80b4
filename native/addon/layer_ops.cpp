// Model-operation entry points for JS (linear, rmsNorm, rope, swiGlu, embedding, argmax,
// topCandidates, repetitionPenalty and ropeAppendKv), in the same shape as kernels.cpp: one
// options object, every argument checked, then sync or async.
#include <napi.h>

#include "core/model_params.h"
#include "cpu/model_ops.h"
#include "dispatch.h"
#include "graph.h"
#include "model_ops.h"
#include "validate.h"
#ifdef LT_WITH_CUDA
#include "cuda/model_kernels.h"
#endif

namespace lt::addon {
namespace {

PreparedCall prepareLinear(const Napi::CallbackInfo& info, CallMode mode) {
  KernelArgs a("linear", info, mode);
  TensorObject *x = a.tensor("x"), *w = a.tensor("weight"), *bias = a.tensor("bias", true), *y = a.tensor("out");
  a.expectRank("weight", w, 2);
  a.expectFloat("x", x);
  a.expectFloat("weight", w);
  const int64_t n = w->shape()[0], k = w->shape()[1];
  if (x->shape().empty() || x->shape().back() != k)
    a.fail("x's last dimension must be the weight's input size " + std::to_string(k) + ", got shape " + shapeString(x->shape()));
  const int64_t m = numel(x->shape()) / k;
  Shape yShape = x->shape();
  yShape.back() = n;
  a.expectShape("out", y, yShape);
  a.expectDType("out", y, x->dtype());
  if (bias) a.expectShape("bias", bias, {n}), a.expectDType("bias", bias, w->dtype());
  Device device = a.sameDevice({{"x", x}, {"weight", w}, {"bias", bias}, {"out", y}});
  LinearParams p;
  p.xType = x->dtype(), p.wType = w->dtype();
  p.x = x->data(), p.w = w->data(), p.bias = bias ? bias->data() : nullptr, p.y = y->data();
  p.m = a.narrow("x's rows", m), p.n = a.narrow("weight's rows", n), p.k = a.narrow("weight's columns", k);
  return dispatchCall(a, device, p, cpu::linear, LT_CUDA_FN(linear));
}

PreparedCall prepareRmsNorm(const Napi::CallbackInfo& info, CallMode mode) {
  KernelArgs a("rmsNorm", info, mode);
  TensorObject *x = a.tensor("x"), *w = a.tensor("weight"), *res = a.tensor("residual", true), *y = a.tensor("out");
  a.expectRank("weight", w, 1);
  a.expectFloat("x", x);
  a.expectFloat("weight", w);
  const int64_t dim = w->shape()[0];
  if (x->shape().back() != dim)
    a.fail("x's last dimension must be the weight's size " + std::to_string(dim) + ", got shape " + shapeString(x->shape()));
  a.expectShape("out", y, x->shape());
  a.expectDType("out", y, x->dtype());
  if (res) {
    a.expectShape("residual", res, x->shape());
    a.expectDType("residual", res, x->dtype());
    if (y->data() == x->data()) a.fail("out may not be x itself when a residual is given");
  }
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
    a.fail("k must be [" + std::to_string(tokens) + ", hkv, " + std::to_string(d) + "], got " + shapeString(k->shape()));
  a.expectShape("positions", pos, {tokens});
  a.expectDType("positions", pos, DType::I32);
  a.expectShape("invFreq", freq, {d / 2});
  a.expectDType("invFreq", freq, DType::F32);
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
  Device device = a.sameDevice({{"ids", ids}, {"table", table}, {"out", y}});
  const auto indices = checkIndices(a, {ids}, [op = a.op(), tokens, vocab](const std::vector<const int32_t*>& c) {
    for (int64_t t = 0; t < tokens; t++)
      if (c[0][t] < 0 || c[0][t] >= vocab)
        throw Error(op + ": ids[" + std::to_string(t) + "] = " + std::to_string(c[0][t]) + " is outside the vocabulary 0.." +
                    std::to_string(vocab - 1));
  });
  EmbeddingParams p;
  p.tableType = table->dtype(), p.yType = y->dtype();
  p.ids = indices[0], p.table = table->data(), p.y = y->data();
  p.tokens = a.narrow("ids' length", tokens), p.dim = a.narrow("table's columns", dim), p.vocab = a.narrow("table's rows", vocab);
  return dispatchCall(a, device, p, cpu::embedding, LT_CUDA_FN(embedding));
}

// ropeAppendKv({ qkv, positions, invFreq, kPages, vPages, slots, q }): see RopeAppendKvParams.
PreparedCall prepareRopeAppendKv(const Napi::CallbackInfo& info, CallMode mode) {
  KernelArgs a("ropeAppendKv", info, mode);
  TensorObject *qkv = a.tensor("qkv"), *pos = a.tensor("positions"), *freq = a.tensor("invFreq");
  TensorObject *kPages = a.tensor("kPages"), *vPages = a.tensor("vPages"), *slots = a.tensor("slots"), *q = a.tensor("q");
  a.expectRank("kPages", kPages, 4);
  a.expectFloat("kPages", kPages);
  a.expectShape("vPages", vPages, kPages->shape());
  const Shape& pool = kPages->shape();
  const int64_t hkv = pool[2], d = pool[3];
  if (d % 2) a.fail("head dim must be even for rotary embedding, got " + std::to_string(d));
  a.expectRank("q", q, 3);
  const int64_t tokens = q->shape()[0], hq = q->shape()[1];
  a.expectShape("q", q, {tokens, hq, d});
  a.expectShape("qkv", qkv, {tokens, (hq + 2 * hkv) * d});
  for (auto [name, t] : {std::pair{"qkv", qkv}, {"q", q}, {"vPages", vPages}}) a.expectDType(name, t, kPages->dtype());
  a.expectShape("positions", pos, {tokens});
  a.expectDType("positions", pos, DType::I32);
  a.expectShape("slots", slots, {tokens});
  a.expectDType("slots", slots, DType::I32);
  a.expectShape("invFreq", freq, {d / 2});
  a.expectDType("invFreq", freq, DType::F32);
  Device device = a.sameDevice({{"qkv", qkv}, {"positions", pos}, {"invFreq", freq}, {"kPages", kPages},
                                {"vPages", vPages}, {"slots", slots}, {"q", q}});
  const int64_t poolSlots = pool[0] * pool[1];
  const auto indices = checkIndices(a, {slots}, [op = a.op(), tokens, poolSlots](const std::vector<const int32_t*>& c) {
    for (int64_t t = 0; t < tokens; t++)
      if (c[0][t] < -1 || c[0][t] >= poolSlots)
        throw Error(op + ": slots[" + std::to_string(t) + "] = " + std::to_string(c[0][t]) +
                    " is outside the pool's slots 0.." + std::to_string(poolSlots - 1) +
                    " (page * pageSize + offset; -1 skips the token)");
  });
  RopeAppendKvParams p;
  p.dtype = kPages->dtype();
  p.qkv = qkv->data(), p.q = q->data(), p.kPages = kPages->data(), p.vPages = vPages->data();
  p.positions = static_cast<const int32_t*>(pos->data());
  p.slots = indices[0];
  p.invFreq = static_cast<const float*>(freq->data());
  p.tokens = a.narrow("q's tokens", tokens), p.hq = a.narrow("q's heads", hq), p.hkv = a.narrow("kPages' heads", hkv);
  p.d = a.narrow("head dim", d);
  p.pageSize = a.narrow("kPages' page size", pool[1]), p.numPages = a.narrow("kPages' pages", pool[0]);
  return dispatchCall(a, device, p, cpu::ropeAppendKv, LT_CUDA_FN(ropeAppendKv));
}

// argmax({ logits: [rows, vocab] f32, f16 or bf16, out: i32 [rows] }): see ArgmaxParams.
PreparedCall prepareArgmax(const Napi::CallbackInfo& info, CallMode mode) {
  KernelArgs a("argmax", info, mode);
  TensorObject *logits = a.tensor("logits"), *out = a.tensor("out");
  a.expectRank("logits", logits, 2);
  a.expectFloat("logits", logits);
  const int64_t rows = logits->shape()[0], vocab = logits->shape()[1];
  a.expectShape("out", out, {rows});
  a.expectDType("out", out, DType::I32);
  Device device = a.sameDevice({{"logits", logits}, {"out", out}});
  out->dropShadow();
  ArgmaxParams p;
  p.dtype = logits->dtype();
  p.logits = logits->data(), p.out = static_cast<int32_t*>(out->data());
  p.rows = a.narrow("logits' rows", rows), p.vocab = a.narrow("logits' vocabulary", vocab);
  return dispatchCall(a, device, p, cpu::argmax, LT_CUDA_FN(argmax));
}

// topCandidates({ logits: [rows, vocab], temperature: f32 [rows], k, ids: i32 [rows, capacity],
// scores: f32 [rows, capacity], count: i32 [rows], max: f32 [rows], mass: f32 [rows] }).
PreparedCall prepareTopCandidates(const Napi::CallbackInfo& info, CallMode mode) {
  KernelArgs a("topCandidates", info, mode);
  TensorObject *logits = a.tensor("logits"), *temperature = a.tensor("temperature"), *ids = a.tensor("ids");
  TensorObject *scores = a.tensor("scores"), *count = a.tensor("count"), *max = a.tensor("max"), *mass = a.tensor("mass");
  a.expectRank("logits", logits, 2);
  a.expectFloat("logits", logits);
  const int64_t rows = logits->shape()[0], vocab = logits->shape()[1];
  a.expectRank("ids", ids, 2);
  const int64_t capacity = ids->shape()[1];
  a.expectShape("ids", ids, {rows, capacity});
  a.expectDType("ids", ids, DType::I32);
  a.expectShape("scores", scores, {rows, capacity});
  for (auto [name, t] : {std::pair{"temperature", temperature}, {"max", max}, {"mass", mass}}) {
    a.expectShape(name, t, {rows});
    a.expectDType(name, t, DType::F32);
  }
  a.expectDType("scores", scores, DType::F32);
  a.expectShape("count", count, {rows});
  a.expectDType("count", count, DType::I32);
  const int32_t k = a.integer("k", 1, a.narrow("the candidate capacity", std::min<int64_t>(vocab, capacity)));
  Device device = a.sameDevice({{"logits", logits}, {"temperature", temperature}, {"ids", ids}, {"scores", scores},
                                {"count", count}, {"max", max}, {"mass", mass}});
  ids->dropShadow();
  count->dropShadow();
  TopCandidatesParams p;
  p.dtype = logits->dtype();
  p.logits = logits->data();
  p.temperature = static_cast<const float*>(temperature->data());
  p.ids = static_cast<int32_t*>(ids->data()), p.scores = static_cast<float*>(scores->data());
  p.count = static_cast<int32_t*>(count->data());
  p.max = static_cast<float*>(max->data()), p.mass = static_cast<float*>(mass->data());
  p.rows = a.narrow("logits' rows", rows), p.vocab = a.narrow("logits' vocabulary", vocab), p.k = k;
  p.capacity = a.narrow("ids' capacity", capacity);
  return dispatchCall(a, device, p, cpu::topCandidates, LT_CUDA_FN(topCandidates));
}

// repetitionPenalty({ logits: [rows, vocab] (in place), ids: i32 [n], offsets: i32 [rows + 1],
// penalty: f32 [rows] }): row r's ids are ids[offsets[r] .. offsets[r+1]), distinct.
PreparedCall prepareRepetitionPenalty(const Napi::CallbackInfo& info, CallMode mode) {
  KernelArgs a("repetitionPenalty", info, mode);
  TensorObject *logits = a.tensor("logits"), *ids = a.tensor("ids"), *offsets = a.tensor("offsets");
  TensorObject* penalty = a.tensor("penalty");
  a.expectRank("logits", logits, 2);
  a.expectFloat("logits", logits);
  const int64_t rows = logits->shape()[0], vocab = logits->shape()[1];
  a.expectRank("ids", ids, 1);
  a.expectDType("ids", ids, DType::I32);
  a.expectShape("offsets", offsets, {rows + 1});
  a.expectDType("offsets", offsets, DType::I32);
  a.expectShape("penalty", penalty, {rows});
  a.expectDType("penalty", penalty, DType::F32);
  Device device = a.sameDevice({{"logits", logits}, {"ids", ids}, {"offsets", offsets}, {"penalty", penalty}});
  const int64_t count = ids->shape()[0];
  const int32_t rowCount = a.narrow("logits' rows", rows), vocabSize = a.narrow("logits' vocabulary", vocab);
  a.narrow("ids' length", count);
  const auto indices = checkIndices(a, {offsets, ids}, [op = a.op(), rows, vocab, count](const std::vector<const int32_t*>& c) {
    const int32_t *hostOffsets = c[0], *hostIds = c[1];
    if (hostOffsets[0] != 0 || hostOffsets[rows] != count)
      throw Error(op + ": " + "offsets must start at 0 and end at ids' length " + std::to_string(count) + ", got " +
                        std::to_string(hostOffsets[0]) + " .. " + std::to_string(hostOffsets[rows]));
    // Two threads updating the same logit would race, so a row must not name a token twice.
    std::vector<int32_t> lastRow(size_t(vocab), -1);
    for (int64_t r = 0; r < rows; r++) {
      if (hostOffsets[r + 1] < hostOffsets[r])
        throw Error(op + ": " + "offsets must not decrease, but offsets[" + std::to_string(r + 1) + "] < offsets[" + std::to_string(r) + "]");
      for (int32_t i = hostOffsets[r]; i < hostOffsets[r + 1]; i++) {
        const int32_t id = hostIds[i];
        if (id < 0 || id >= vocab)
          throw Error(op + ": " + "ids[" + std::to_string(i) + "] = " + std::to_string(id) + " is outside the vocabulary 0.." + std::to_string(vocab - 1));
        if (lastRow[size_t(id)] == int32_t(r))
          throw Error(op + ": " + "row " + std::to_string(r) + " lists token " + std::to_string(id) + " twice; pass each seen token once");
        lastRow[size_t(id)] = int32_t(r);
      }
    }
  });
  RepetitionPenaltyParams p;
  p.dtype = logits->dtype();
  p.logits = logits->data();
  p.offsets = indices[0], p.ids = indices[1];
  p.penalty = static_cast<const float*>(penalty->data());
  p.rows = rowCount, p.vocab = vocabSize;
  return dispatchCall(a, device, p, cpu::repetitionPenalty, LT_CUDA_FN(repetitionPenalty));
}

}  // namespace

void RegisterModelOps(Napi::Env env, Napi::Object exports) {
  exportCall<prepareLinear>(env, exports, "linear");
  exportCall<prepareRmsNorm>(env, exports, "rmsNorm");
  exportCall<prepareRope>(env, exports, "rope");
  exportCall<prepareSwiGlu>(env, exports, "swiGlu");
  exportCall<prepareEmbedding>(env, exports, "embedding");
  exportCall<prepareArgmax>(env, exports, "argmax");
  exportCall<prepareTopCandidates>(env, exports, "topCandidates");
  exportCall<prepareRepetitionPenalty>(env, exports, "repetitionPenalty");
  exportCall<prepareRopeAppendKv>(env, exports, "ropeAppendKv");
#ifdef LT_WITH_CUDA
  exports.Set("gemmBackend", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    Napi::Object o = Napi::Object::New(info.Env());
    if (!cuda::availability().available) return info.Env().Null();
    cuda::GemmBackend b = cuda::gemmBackend();
    o.Set("name", b.name);
    o.Set("detail", b.detail);
    return o;
  }, "gemmBackend"));
#else
  exports.Set("gemmBackend", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value { return info.Env().Null(); }, "gemmBackend"));
#endif
}

}  // namespace lt::addon
