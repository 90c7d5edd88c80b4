// CPU prefill attention: out = softmax(scale · q kᵀ + mask) v for one sequence, with LSE and
// the optional fused lazy ratio (DESIGN.md section 2).
//
// Launch: K and V are widened to f32 once, regrouped per kv head ([hkv][nk][d]) so each
// score is one contiguous dot product; then the (query, head) rows are spread over the
// thread pool. A row only visits the keys its mask allows (at most two ranges: the sinks
// and the causal window), so the streaming mask costs O(nq · (sink + window)).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/thread_pool.h"
#include "cpu_kernels.h"
#include "vector_math.h"

namespace lt::cpu {

// Keys visible to the query at absolute position `pos`: [0, sinkEnd) ∪ [windowBegin, pos].
struct VisibleKeys {
  int32_t sinkEnd;
  int32_t windowBegin;
};

static VisibleKeys visibleKeys(int32_t pos, const StreamingMask& mask) {
  if (!mask.enabled) return {0, 0};
  int32_t sinkEnd = std::min(mask.sink, pos + 1);
  int32_t windowBegin = std::max(sinkEnd, pos - mask.window + 1);
  return {sinkEnd, windowBegin};
}

// Keys are regrouped as [head][token][d] in f32 so every score is one unit-stride dot.
std::vector<float> widenPerHead(DType dtype, const void* src, int32_t tokens, int32_t heads, int32_t d) {
  std::vector<float> dst(size_t(heads) * tokens * d);
  parallelFor(tokens, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; t++)
      for (int32_t h = 0; h < heads; h++)
        loadAsFloat(dtype, src, (size_t(t) * heads + h) * d, d, &dst[(size_t(h) * tokens + t) * d]);
  }, 16);
  return dst;
}

void prefillAttention(const PrefillAttentionParams& p) {
  const int32_t nq = p.nq, nk = p.nk, hq = p.hq, hkv = p.hkv, d = p.d;
  const int32_t group = hq / hkv;
  const int32_t firstPos = nk - nq;
  std::vector<float> kf = widenPerHead(p.dtype, p.k, nk, hkv, d);
  std::vector<float> vf = widenPerHead(p.dtype, p.v, nk, hkv, d);

  const bool wantRatio = p.lazyRatio != nullptr && p.ratio.enabled;
  const int32_t lastBegin = std::max(0, nk - p.ratio.lastQueries);  // first position in Last
  const int32_t recentBegin = nk - p.ratio.window;
  std::vector<double> rowMass(wantRatio ? size_t(nq) * hq : 0, 0.0);

  // Rows are ordered query-major so a chunk of rows shares the same keys in cache.
  parallelFor(int64_t(nq) * hq, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(nk), qrow(d), acc(d);
    for (int64_t row = begin; row < end; row++) {
      const int32_t qi = int32_t(row / hq), h = int32_t(row % hq), kvh = h / group;
      const int32_t pos = firstPos + qi;
      const float* kh = &kf[size_t(kvh) * nk * d];
      const float* vh = &vf[size_t(kvh) * nk * d];
      loadAsFloat(p.dtype, p.q, (size_t(qi) * hq + h) * d, d, qrow.data());
      VisibleKeys vis = visibleKeys(pos, p.mask);

      float maxScore = -std::numeric_limits<float>::infinity();
      auto scoreRange = [&](int32_t from, int32_t to) {
        for (int32_t j = from; j < to; j++) {
          float s = dot(qrow.data(), kh + size_t(j) * d, d) * p.scale;
          scores[j] = s;
          maxScore = std::max(maxScore, s);
        }
      };
      scoreRange(0, vis.sinkEnd);
      scoreRange(vis.windowBegin, pos + 1);

      std::fill(acc.begin(), acc.end(), 0.f);
      float sum = 0.f, subsetSum = 0.f;
      const bool ratioRow = wantRatio && pos >= lastBegin;
      auto accumulateRange = [&](int32_t from, int32_t to) {
        for (int32_t j = from; j < to; j++) {
          float w = std::exp(scores[j] - maxScore);
          sum += w;
          if (ratioRow && (j < p.ratio.sink || j >= recentBegin)) subsetSum += w;
          axpy(w, vh + size_t(j) * d, acc.data(), d);
        }
      };
      accumulateRange(0, vis.sinkEnd);
      accumulateRange(vis.windowBegin, pos + 1);

      const float inv = 1.f / sum;
      for (int32_t i = 0; i < d; i++) acc[i] *= inv;
      storeFromFloat(p.dtype, acc.data(), p.out, (size_t(qi) * hq + h) * d, d);
      if (p.lse) p.lse[size_t(qi) * hq + h] = maxScore + std::log(sum);
      if (ratioRow) rowMass[size_t(qi) * hq + h] = double(subsetSum) / double(sum);
    }
  }, 4);

  if (wantRatio) {
    const int32_t firstRatioQuery = std::max(0, lastBegin - firstPos);
    for (int32_t h = 0; h < hq; h++) {
      double total = 0.0;
      for (int32_t qi = firstRatioQuery; qi < nq; qi++) total += rowMass[size_t(qi) * hq + h];
      p.lazyRatio[h] = float(total / double(nq - firstRatioQuery));
    }
  }
}

}  // namespace lt::cpu
