// CPU standalone lazy ratio (DESIGN.md section 2), from queries, keys and the prefill's LSE:
//   ratio[h] = mean over queries q in Last of exp(logsumexp_{j in Sink ∪ Recent, j <= q} s_qj - lse_q)
// with s_qj = scale · q·k_j, Sink = {j < sink}, Recent = {nk - window <= j < nk}, each key
// counted once. Only the Last queries and the Sink ∪ Recent keys are touched.
// Launch: one task per (Last query, head); a serial mean per head keeps the result deterministic.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/thread_pool.h"
#include "cpu_kernels.h"
#include "vector_math.h"

namespace lt::cpu {

void lazyRatio(const LazyRatioParams& p) {
  const int32_t nq = p.nq, nk = p.nk, hq = p.hq, hkv = p.hkv, d = p.d, group = hq / hkv;
  const int32_t firstPos = nk - nq;
  const int32_t lastBegin = std::max(0, nk - p.spec.lastQueries);
  const int32_t firstQuery = std::max(0, lastBegin - firstPos);
  const int32_t rows = nq - firstQuery;
  const int32_t sinkEnd = std::min(p.spec.sink, nk);
  const int32_t recentBegin = std::max(sinkEnd, nk - p.spec.window);
  std::vector<double> mass(size_t(rows) * hq);

  parallelFor(int64_t(rows) * hq, [&](int64_t begin, int64_t end) {
    std::vector<float> qrow(d), krow(d), scores;
    for (int64_t task = begin; task < end; task++) {
      const int32_t qi = firstQuery + int32_t(task / hq), h = int32_t(task % hq), kvh = h / group;
      const int32_t pos = firstPos + qi;
      loadAsFloat(p.dtype, p.q, (size_t(qi) * hq + h) * d, d, qrow.data());
      scores.clear();
      auto score = [&](int32_t j) {
        loadAsFloat(p.dtype, p.k, (size_t(j) * hkv + kvh) * d, d, krow.data());
        scores.push_back(dot(qrow.data(), krow.data(), d) * p.scale);
      };
      for (int32_t j = 0; j < std::min(sinkEnd, pos + 1); j++) score(j);
      for (int32_t j = recentBegin; j <= pos; j++) score(j);
      float maxScore = -std::numeric_limits<float>::infinity();
      for (float s : scores) maxScore = std::max(maxScore, s);
      double sum = 0.0;
      for (float s : scores) sum += std::exp(double(s) - maxScore);
      const double logMass = double(maxScore) + std::log(sum) - double(p.lse[size_t(qi) * hq + h]);
      // Rounding can push the mass a hair above 1; the ratio is a probability. A NaN (from NaN
      // scores or lse) stays NaN, as in the fused kernel, so that the policy can refuse it.
      mass[task] = logMass > 0.0 ? 1.0 : std::exp(logMass);
    }
  });

  for (int32_t h = 0; h < hq; h++) {
    double total = 0.0;
    for (int32_t r = 0; r < rows; r++) total += mass[size_t(r) * hq + h];
    p.ratio[h] = float(total / rows);
  }
}

}  // namespace lt::cpu
