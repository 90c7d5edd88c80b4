// CPU prefill attention: out = softmax(scale · q kᵀ + mask) v for one sequence, with LSE and
// the optional fused lazy ratio (DESIGN.md section 2).
//
// Launch: K and V are widened to f32 once, regrouped per kv head ([hkv][rows][d]) so each
// score is one contiguous dot product; then the (query, kv head) tasks are spread over the
// thread pool. A task scores four keys against two of its group's heads per call and adds four
// value rows per call, so each loaded row serves several products. A cached prefix is read through its page table into
// the same copy, only the positions its cache still holds (a ring keeps the sinks and the last window). A row only
// visits the keys its mask allows (at most two ranges: the sinks and the causal window), so
// the streaming mask costs O(nq · (sink + window)).
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

// Rows of the f32 key/value copies: the cached positions still held ([0, heldSinks) and
// [tailBegin, length)), then the call's own positions [length, nk). Without a prefix, or
// with a full one, row(j) = j.
struct KeyRows {
  int32_t heldSinks = 0;
  int32_t tailBegin = 0;
  int32_t length = 0;
  int32_t rows = 0;
  int32_t row(int32_t j) const { return j < heldSinks ? j : heldSinks + (j - tailBegin); }
};

static KeyRows keyRows(const PrefillAttentionParams& p) {
  KeyRows r;
  const CachedPrefix& c = p.cached;
  if (c.enabled && c.ring) {
    r.heldSinks = std::min(c.ringSink, c.length);
    r.tailBegin = std::max(r.heldSinks, c.length - c.ringWindow);
  }
  r.length = c.enabled ? c.length : 0;
  r.rows = r.row(p.nk);
  return r;
}

// Own rows (token-major [tokens, heads, d]) widened into dst[head][row][d] from row `firstRow`.
static void widenOwn(DType dtype, const void* src, int32_t tokens, int32_t heads, int32_t d, int32_t rows,
                     int32_t firstRow, float* dst) {
  parallelFor(
      tokens,
      [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; t++)
          for (int32_t h = 0; h < heads; h++)
            loadAsFloat(dtype, src, (size_t(t) * heads + h) * d, d, &dst[(size_t(h) * rows + firstRow + t) * d]);
      },
      16);
}

// The held cached positions of `pages`, read through the page table, into dst[head][row][d].
static void widenCached(const PrefillAttentionParams& p, const KeyRows& r, const void* pages, float* dst) {
  const CachedPrefix& c = p.cached;
  const int32_t heldRows = r.heldSinks + (r.length - r.tailBegin);
  parallelFor(
      heldRows,
      [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; row++) {
          const int32_t pos = row < r.heldSinks ? int32_t(row) : r.tailBegin + int32_t(row) - r.heldSinks;
          const int32_t slot = c.ring && pos >= c.ringSink ? c.ringSink + (pos - c.ringSink) % c.ringWindow : pos;
          const size_t poolSlot = size_t(c.pageTable[slot / c.pageSize]) * c.pageSize + slot % c.pageSize;
          for (int32_t h = 0; h < p.hkv; h++)
            loadAsFloat(p.dtype, pages, (poolSlot * p.hkv + h) * p.d, p.d, &dst[(size_t(h) * r.rows + row) * p.d]);
        }
      },
      16);
}

static std::vector<float> widenKeys(const PrefillAttentionParams& p, const KeyRows& r, const void* own,
                                    const void* pages) {
  std::vector<float> dst(size_t(p.hkv) * r.rows * p.d);
  if (p.cached.enabled) widenCached(p, r, pages, dst.data());
  widenOwn(p.dtype, own, p.nk - r.length, p.hkv, p.d, r.rows, r.row(r.length), dst.data());
  return dst;
}

void prefillAttention(const PrefillAttentionParams& p) {
  const int32_t nq = p.nq, nk = p.nk, hq = p.hq, hkv = p.hkv, d = p.d;
  const int32_t group = hq / hkv;
  const int32_t firstPos = nk - nq;
  const KeyRows keys = keyRows(p);
  const int32_t rows = keys.rows;
  std::vector<float> kf = widenKeys(p, keys, p.k, p.cached.kPages);
  std::vector<float> vf = widenKeys(p, keys, p.v, p.cached.vPages);

  const bool wantRatio = p.lazyRatio != nullptr && p.ratio.enabled;
  const int32_t lastBegin = std::max(0, nk - p.ratio.lastQueries);  // first position in Last
  const int32_t recentBegin = nk - p.ratio.window;
  std::vector<double> rowMass(wantRatio ? size_t(nq) * hq : 0, 0.0);

  // One task per (query, kv head): every K and V row it loads serves the whole GQA group of
  // query heads, so the group shares each load. Tasks are query-major so neighbours share keys.
  parallelFor(
      int64_t(nq) * hkv,
      [&](int64_t begin, int64_t end) {
        std::vector<float> scores(size_t(group) * rows), qrows(size_t(group) * d), acc(size_t(group) * d);
        std::vector<float> maxScore(group), sum(group), subsetSum(group);
        for (int64_t task = begin; task < end; task++) {
          const int32_t qi = int32_t(task / hkv), kvh = int32_t(task % hkv);
          const int32_t pos = firstPos + qi;
          const float* kh = &kf[size_t(kvh) * rows * d];
          const float* vh = &vf[size_t(kvh) * rows * d];
          for (int32_t g = 0; g < group; g++)
            loadAsFloat(p.dtype, p.q, (size_t(qi) * hq + kvh * group + g) * d, d, &qrows[size_t(g) * d]);
          VisibleKeys vis = visibleKeys(pos, p.mask);

          std::fill(maxScore.begin(), maxScore.end(), -std::numeric_limits<float>::infinity());
          // Four keys against two query heads of the group at a time (dotBlock4x2); a short
          // block repeats its last key or head and drops the repeats.
          auto scoreRange = [&](int32_t from, int32_t to) {
            for (int32_t j0 = from; j0 < to; j0 += 4) {
              const float* krows[4];
              int32_t keyRow[4];
              for (int32_t i = 0; i < 4; i++) {
                keyRow[i] = keys.row(std::min(j0 + i, to - 1));
                krows[i] = kh + size_t(keyRow[i]) * d;
              }
              const int32_t count = std::min(4, to - j0);
              for (int32_t g0 = 0; g0 < group; g0 += 2) {
                const int32_t g1 = std::min(g0 + 1, group - 1);
                const float* heads[2] = {&qrows[size_t(g0) * d], &qrows[size_t(g1) * d]};
                float dots[8];
                dotBlock4x2(krows, heads, d, dots);
                for (int32_t i = 0; i < count; i++)
                  for (int32_t c = 0; c < 2 && g0 + c < group; c++) {
                    const int32_t g = g0 + c;
                    const float score = dots[i * 2 + c] * p.scale;
                    scores[size_t(g) * rows + keyRow[i]] = score;
                    maxScore[g] = std::max(maxScore[g], score);
                  }
              }
            }
          };
          scoreRange(0, vis.sinkEnd);
          scoreRange(vis.windowBegin, pos + 1);

          // Four value rows at a time per head (axpy4), in blocks of four keys aligned to key 0, an
          // invisible key in a block weighing 0: each head's accumulator is read and written once
          // per block, and a mask that hides nothing (a window >= N) sums exactly as causal does.
          const bool ratioRow = wantRatio && pos >= lastBegin;
          auto visible = [&](int32_t j) { return j <= pos && (j < vis.sinkEnd || j >= vis.windowBegin); };
          auto accumulateBlock = [&](int32_t j0) {
            int32_t firstVisible = j0;
            while (!visible(firstVisible)) firstVisible++;
            const float* vrows[4];
            int32_t keyRow[4];
            for (int32_t i = 0; i < 4; i++) {
              keyRow[i] = keys.row(visible(j0 + i) ? j0 + i : firstVisible);
              vrows[i] = vh + size_t(keyRow[i]) * d;
            }
            for (int32_t g = 0; g < group; g++) {
              float w[4] = {0.f, 0.f, 0.f, 0.f};
              for (int32_t i = 0; i < 4; i++) {
                const int32_t j = j0 + i;
                if (!visible(j)) continue;
                w[i] = std::exp(scores[size_t(g) * rows + keyRow[i]] - maxScore[g]);
                sum[g] += w[i];
                if (ratioRow && (j < p.ratio.sink || j >= recentBegin)) subsetSum[g] += w[i];
              }
              axpy4(w, vrows, &acc[size_t(g) * d], d);
            }
          };
          std::fill(acc.begin(), acc.end(), 0.f);
          std::fill(sum.begin(), sum.end(), 0.f);
          std::fill(subsetSum.begin(), subsetSum.end(), 0.f);
          const int32_t sinkBlocksEnd = (vis.sinkEnd + 3) / 4 * 4;
          for (int32_t j0 = 0; j0 < vis.sinkEnd; j0 += 4) accumulateBlock(j0);
          for (int32_t j0 = std::max(sinkBlocksEnd, vis.windowBegin / 4 * 4); j0 <= pos; j0 += 4) accumulateBlock(j0);

          for (int32_t g = 0; g < group; g++) {
            const int32_t h = kvh * group + g;
            float* a = &acc[size_t(g) * d];
            const float inv = 1.f / sum[g];
            for (int32_t i = 0; i < d; i++) a[i] *= inv;
            storeFromFloat(p.dtype, a, p.out, (size_t(qi) * hq + h) * d, d);
            if (p.lse) p.lse[size_t(qi) * hq + h] = maxScore[g] + std::log(sum[g]);
            if (ratioRow) rowMass[size_t(qi) * hq + h] = double(subsetSum[g]) / double(sum[g]);
          }
        }
      },
      1);

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
