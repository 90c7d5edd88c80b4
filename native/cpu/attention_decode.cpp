// CPU decode attention: one query per sequence over its paged K/V (DESIGN.md section 4).
// out[b, h] = softmax(scale · q[b, h] · K[b]ᵀ) V[b] over the valid slots 0..seqLens[b]-1,
// where slot s lives at page pageTable[b][s / pageSize], offset s % pageSize. Full caches and
// streaming rings are the same call: a ring passes min(len, sink + window) valid slots.
//
// Launch: one task per (sequence, kv head); the task widens each K/V row once and serves
// every query head of the GQA group from it. Slots go in blocks of kBlock, each block's scores
// held at once and merged into the running output by its max (online softmax), so a task's
// memory stays bounded whatever seqLens asks for; a cache of at most kBlock slots is one block,
// two passes over its scores.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/thread_pool.h"
#include "cpu_kernels.h"
#include "vector_math.h"

namespace lt::cpu {

constexpr int32_t kBlock = 4096;

void decodeAttention(const DecodeAttentionParams& p) {
  const int32_t hq = p.hq, hkv = p.hkv, d = p.d, group = hq / hkv;
  parallelFor(int64_t(p.batch) * hkv, [&](int64_t begin, int64_t end) {
    std::vector<float> qrows(size_t(group) * d), acc(size_t(group) * d), krow(d), vrow(d);
    std::vector<float> scores(size_t(group) * kBlock), maxScore(group), blockMax(group), sum(group);
    for (int64_t task = begin; task < end; task++) {
      const int32_t b = int32_t(task / hkv), kvh = int32_t(task % hkv);
      const int32_t len = p.seqLens[b];
      const int32_t* pages = p.pageTable + size_t(b) * p.maxPagesPerSeq;
      for (int32_t g = 0; g < group; g++)
        loadAsFloat(p.dtype, p.q, (size_t(b) * hq + kvh * group + g) * d, d, &qrows[size_t(g) * d]);
      auto rowOffset = [&](int32_t slot) {
        size_t poolSlot = size_t(pages[slot / p.pageSize]) * p.pageSize + slot % p.pageSize;
        return (poolSlot * hkv + kvh) * d;
      };

      std::fill(acc.begin(), acc.end(), 0.f);
      std::fill(sum.begin(), sum.end(), 0.f);
      std::fill(maxScore.begin(), maxScore.end(), -std::numeric_limits<float>::infinity());
      for (int32_t start = 0; start < len; start += kBlock) {
        const int32_t n = std::min(kBlock, len - start);
        blockMax = maxScore;
        for (int32_t s = 0; s < n; s++) {
          loadAsFloat(p.dtype, p.kPages, rowOffset(start + s), d, krow.data());
          for (int32_t g = 0; g < group; g++) {
            float v = dot(&qrows[size_t(g) * d], krow.data(), d) * p.scale;
            scores[size_t(g) * kBlock + s] = v;
            blockMax[g] = std::max(blockMax[g], v);
          }
        }
        // What the blocks before summed, rescaled to the new max (nothing before the first).
        for (int32_t g = 0; g < group; g++) {
          if (start > 0 && blockMax[g] != maxScore[g]) {
            const float rescale = std::exp(maxScore[g] - blockMax[g]);
            sum[g] *= rescale;
            for (int32_t i = 0; i < d; i++) acc[size_t(g) * d + i] *= rescale;
          }
          maxScore[g] = blockMax[g];
        }
        for (int32_t s = 0; s < n; s++) {
          loadAsFloat(p.dtype, p.vPages, rowOffset(start + s), d, vrow.data());
          for (int32_t g = 0; g < group; g++) {
            float w = std::exp(scores[size_t(g) * kBlock + s] - maxScore[g]);
            sum[g] += w;
            axpy(w, vrow.data(), &acc[size_t(g) * d], d);
          }
        }
      }
      for (int32_t g = 0; g < group; g++) {
        const int32_t h = kvh * group + g;
        // An empty cache attends to nothing: a zero output and an LSE of -inf, never NaN.
        const float inv = len > 0 ? 1.f / sum[g] : 0.f;
        for (int32_t i = 0; i < d; i++) acc[size_t(g) * d + i] *= inv;
        storeFromFloat(p.dtype, &acc[size_t(g) * d], p.out, (size_t(b) * hq + h) * d, d);
        if (p.lse)
          p.lse[size_t(b) * hq + h] =
              len > 0 ? maxScore[g] + std::log(sum[g]) : -std::numeric_limits<float>::infinity();
      }
    }
  });
}

}  // namespace lt::cpu
