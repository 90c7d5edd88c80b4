// CPU sampling helpers (params and contracts in native/core/model_params.h), the references of
// the CUDA kernels in native/cuda/sampling.cu:
//   topCandidates: the k most likely tokens of each row of logits, ties at the boundary
//     included, and the row's softmax mass; exact except for how the mass is summed.
//   repetitionPenalty: transformers' penalty on the tokens each row has seen, in place.
//   argmax: the index of each row's largest logit, NaN first, lowest index among equals.
//   tokenLogprobs: the log-probability of one given token per row, summed in f64.
//
// Launch: rows split across the thread pool. topCandidates: per row one widening pass, one pass
// for max and mass, nth_element over a copy for the k-th largest value, one pass to gather.
#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "cpu_kernels.h"
#include "vector_math.h"

namespace lt::cpu {

void topCandidates(const TopCandidatesParams& p) {
  if (p.k < 1 || p.k > p.capacity || p.k > p.vocab)
    throw Error("topCandidates: need 1 <= k <= capacity and k <= vocab, got k " + std::to_string(p.k) + ", capacity " +
                std::to_string(p.capacity) + ", vocab " + std::to_string(p.vocab));
  parallelFor(p.rows, [&](int64_t begin, int64_t end) {
    std::vector<float> row(size_t(p.vocab)), kept;
    for (int64_t r = begin; r < end; r++) {
      loadAsFloat(p.dtype, p.logits, size_t(r) * p.vocab, size_t(p.vocab), row.data());
      float max = -INFINITY;
      kept.clear();
      for (float v : row)
        if (!std::isnan(v)) kept.push_back(v), max = std::max(max, v);
      double mass = 0;
      if (max != -INFINITY)
        for (float v : kept) mass += std::exp(double(v - max) / double(p.temperature[r]));
      p.max[r] = max;
      p.mass[r] = float(mass);
      if (kept.empty()) {
        p.count[r] = 0;
        continue;
      }
      const size_t kth = std::min(size_t(p.k), kept.size()) - 1;
      std::nth_element(kept.begin(), kept.begin() + ptrdiff_t(kth), kept.end(), std::greater<float>());
      const float threshold = kept[kth];
      int32_t count = 0;
      int32_t* ids = p.ids + size_t(r) * p.capacity;
      float* scores = p.scores + size_t(r) * p.capacity;
      for (int32_t j = 0; j < p.vocab; j++) {
        if (!(row[size_t(j)] >= threshold)) continue;  // NaN fails too
        if (count < p.capacity) ids[count] = j, scores[count] = row[size_t(j)];
        count++;
      }
      p.count[r] = count;
    }
  });
}

void tokenLogprobs(const TokenLogprobsParams& p) {
  parallelFor(p.rows, [&](int64_t begin, int64_t end) {
    std::vector<float> row(size_t(p.vocab));
    for (int64_t r = begin; r < end; r++) {
      loadAsFloat(p.dtype, p.logits, size_t(r) * p.vocab, size_t(p.vocab), row.data());
      double max = -INFINITY;
      for (float v : row) max = std::isnan(v) || std::isnan(max) ? NAN : std::max(max, double(v));
      double sum = 0;
      for (float v : row) sum += std::exp(double(v) - max);
      p.out[r] = float(double(row[size_t(p.targets[r])]) - max - std::log(sum));
    }
  });
}

void repetitionPenalty(const RepetitionPenaltyParams& p) {
  parallelFor(p.rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; r++) {
      const float penalty = p.penalty[r];
      for (int32_t i = p.offsets[r]; i < p.offsets[r + 1]; i++) {
        const size_t at = size_t(r) * p.vocab + size_t(p.ids[i]);
        float x;
        loadAsFloat(p.dtype, p.logits, at, 1, &x);
        x = x > 0 ? x / penalty : x * penalty;
        storeFromFloat(p.dtype, &x, p.logits, at, 1);
      }
    }
  });
}

static float f32ToFloat(float v) {
  return v;
}

// One row, scanned in index order: the first NaN ends the search, and a strict > keeps the
// lowest index among equal values. Starting below -inf makes a row of -inf answer 0.
template <typename T, float (*toFloat)(T)>
static int32_t argmaxRow(const T* row, int32_t vocab) {
  int32_t best = 0;
  float bestV = -INFINITY;
  for (int32_t j = 0; j < vocab; j++) {
    const float v = toFloat(row[j]);
    if (std::isnan(v)) return j;
    if (v > bestV) bestV = v, best = j;
  }
  return best;
}

template <typename T, float (*toFloat)(T)>
static void argmaxRows(const ArgmaxParams& p) {
  const T* logits = static_cast<const T*>(p.logits);
  parallelFor(p.rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; r++) p.out[r] = argmaxRow<T, toFloat>(logits + size_t(r) * p.vocab, p.vocab);
  });
}

void argmax(const ArgmaxParams& p) {
  switch (p.dtype) {
    case DType::F32:
      return argmaxRows<float, f32ToFloat>(p);
    case DType::F16:
      return argmaxRows<uint16_t, f16ToFloat>(p);
    case DType::BF16:
      return argmaxRows<uint16_t, bf16ToFloat>(p);
    case DType::I32:
      break;
  }
  throw Error(std::string("argmax: logits must be f32, f16 or bf16, not ") + dtypeName(p.dtype));
}

}  // namespace lt::cpu
