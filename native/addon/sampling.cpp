// Sampling bindings: argmax, topCandidates, tokenLogprobs and repetitionPenalty over rows of logits. How every
// binding runs: bindings.h.
#include <napi.h>

#include <algorithm>
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

// argmax({ logits: [rows, vocab] f32, f16 or bf16, out: i32 [rows] }): see ArgmaxParams.
PreparedCall prepareArgmax(const Napi::CallbackInfo& info, CallMode mode) {
  KernelArgs a("argmax", info, mode);
  TensorObject *logits = a.tensor("logits"), *out = a.tensor("out");
  a.expectRank("logits", logits, 2);
  a.expectFloat("logits", logits);
  const int64_t rows = logits->shape()[0], vocab = logits->shape()[1];
  a.expectShape("out", out, {rows});
  a.expectDType("out", out, DType::I32);
  expectApart(a, {{"out", out}}, {{"logits", logits}});
  Device device = a.sameDevice({{"logits", logits}, {"out", out}});
  a.writesIndices(out);
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
  TensorObject *scores = a.tensor("scores"), *count = a.tensor("count"), *max = a.tensor("max"),
               *mass = a.tensor("mass");
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
  Device device = a.sameDevice({{"logits", logits},
                                {"temperature", temperature},
                                {"ids", ids},
                                {"scores", scores},
                                {"count", count},
                                {"max", max},
                                {"mass", mass}});
  expectApart(a, {{"ids", ids}, {"scores", scores}, {"count", count}, {"max", max}, {"mass", mass}},
              {{"logits", logits}, {"temperature", temperature}});
  a.writesIndices(ids);
  a.writesIndices(count);
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

// tokenLogprobs({ logits: [rows, vocab] f32, f16 or bf16, targets: i32 [rows], out: f32 [rows] }):
// see TokenLogprobsParams.
PreparedCall prepareTokenLogprobs(const Napi::CallbackInfo& info, CallMode mode) {
  KernelArgs a("tokenLogprobs", info, mode);
  TensorObject *logits = a.tensor("logits"), *targets = a.tensor("targets"), *out = a.tensor("out");
  a.expectRank("logits", logits, 2);
  a.expectFloat("logits", logits);
  const int64_t rows = logits->shape()[0], vocab = logits->shape()[1];
  a.expectShape("targets", targets, {rows});
  a.expectDType("targets", targets, DType::I32);
  a.expectShape("out", out, {rows});
  a.expectDType("out", out, DType::F32);
  expectApart(a, {{"out", out}}, {{"logits", logits}, {"targets", targets}});
  Device device = a.sameDevice({{"logits", logits}, {"targets", targets}, {"out", out}});
  const auto indices = checkIndices(a, {targets}, [op = a.op(), rows, vocab](const IndexContents& c) {
    for (int64_t r = 0; r < rows; r++) checkTokenId(op, "targets", r, c[0][r], vocab);
  });
  out->dropShadow();
  TokenLogprobsParams p;
  p.dtype = logits->dtype();
  p.logits = logits->data(), p.targets = indices[0], p.out = static_cast<float*>(out->data());
  p.rows = a.narrow("logits' rows", rows), p.vocab = a.narrow("logits' vocabulary", vocab);
  return dispatchCall(a, device, p, cpu::tokenLogprobs, LT_CUDA_FN(tokenLogprobs));
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
  expectApart(a, {{"logits", logits}}, {{"ids", ids}, {"offsets", offsets}, {"penalty", penalty}});
  Device device = a.sameDevice({{"logits", logits}, {"ids", ids}, {"offsets", offsets}, {"penalty", penalty}});
  const int64_t count = ids->shape()[0];
  const int32_t rowCount = a.narrow("logits' rows", rows), vocabSize = a.narrow("logits' vocabulary", vocab);
  a.narrow("ids' length", count);
  const auto indices = checkIndices(a, {offsets, ids}, [op = a.op(), rows, vocab, count](const IndexContents& c) {
    const int32_t *hostOffsets = c[0], *hostIds = c[1];
    if (hostOffsets[0] != 0 || hostOffsets[rows] != count)
      throw Error(op + ": " + "offsets must start at 0 and end at ids' length " + std::to_string(count) + ", got " +
                  std::to_string(hostOffsets[0]) + " .. " + std::to_string(hostOffsets[rows]));
    // Every offset before any id is read: a row's range must lie within ids.
    for (int64_t r = 0; r < rows; r++)
      if (hostOffsets[r + 1] < hostOffsets[r])
        throw Error(op + ": " + "offsets must not decrease, but offsets[" + std::to_string(r + 1) + "] < offsets[" +
                    std::to_string(r) + "]");
    // Two threads updating the same logit would race, so a row must not name a token twice.
    std::vector<int32_t> lastRow(size_t(vocab), -1);
    for (int64_t r = 0; r < rows; r++) {
      for (int32_t i = hostOffsets[r]; i < hostOffsets[r + 1]; i++) {
        const int32_t id = hostIds[i];
        checkTokenId(op, "ids", i, id, vocab);
        if (lastRow[size_t(id)] == int32_t(r))
          throw Error(op + ": " + "row " + std::to_string(r) + " lists token " + std::to_string(id) +
                      " twice; pass each seen token once");
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

void RegisterSampling(Napi::Env env, Napi::Object exports) {
  exportCall<prepareArgmax>(env, exports, "argmax");
  exportCall<prepareTopCandidates>(env, exports, "topCandidates");
  exportCall<prepareTokenLogprobs>(env, exports, "tokenLogprobs");
  exportCall<prepareRepetitionPenalty>(env, exports, "repetitionPenalty");
}

}  // namespace lt::addon
