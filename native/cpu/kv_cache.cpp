// CPU cache operations on the page pool [numPages, pageSize, hkv, d] (K and V alike).
//   appendKv:        token t's [hkv, d] rows are copied to pool slot slots[t] (-1: skipped).
//   cutToStreaming:  a full cache of `length` tokens becomes the ring of DESIGN.md section 2:
//                    token p -> slot p if p < sink, else sink + (p - sink) mod window, keeping
//                    the sinks and the last `window` tokens. Gathered through a scratch buffer
//                    first, because the ring's pages may be the full cache's first pages.
//   gatherKv:        pool slots copied out to contiguous rows, in the order given.
// Launch: one task per token row; rows are plain byte copies (no dtype conversion).
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/thread_pool.h"
#include "cpu_kernels.h"

namespace lt::cpu {

void appendKv(const AppendKvParams& p) {
  const size_t rowBytes = size_t(p.hkv) * p.d * dtypeSize(p.dtype);
  auto* kPool = static_cast<uint8_t*>(p.kPages);
  auto* vPool = static_cast<uint8_t*>(p.vPages);
  parallelFor(
      p.tokens,
      [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; t++) {
          if (p.slots[t] < 0) continue;  // -1: a token the caller drops (a ring slot a later token takes)
          const size_t dst = size_t(p.slots[t]) * rowBytes;
          std::memcpy(kPool + dst, static_cast<const uint8_t*>(p.k) + t * rowBytes, rowBytes);
          std::memcpy(vPool + dst, static_cast<const uint8_t*>(p.v) + t * rowBytes, rowBytes);
        }
      },
      64);
}

void cutToStreaming(const CutToStreamingParams& p) {
  const size_t rowBytes = size_t(p.hkv) * p.d * dtypeSize(p.dtype);
  const int32_t ringLen = std::min(p.length, p.sink + p.window);
  const int32_t recentBegin = std::max(std::min(p.sink, p.length), p.length - p.window);
  auto* kPool = static_cast<uint8_t*>(p.kPages);
  auto* vPool = static_cast<uint8_t*>(p.vPages);
  std::vector<uint8_t> kScratch(size_t(ringLen) * rowBytes), vScratch(size_t(ringLen) * rowBytes);

  auto poolOffset = [&](const int32_t* table, int32_t slot) {
    return (size_t(table[slot / p.pageSize]) * p.pageSize + slot % p.pageSize) * rowBytes;
  };
  auto ringSlot = [&](int32_t pos) { return pos < p.sink ? pos : p.sink + (pos - p.sink) % p.window; };
  auto gather = [&](int32_t pos) {
    const size_t src = poolOffset(p.srcPageTable, pos);
    const size_t dst = size_t(ringSlot(pos)) * rowBytes;
    std::memcpy(kScratch.data() + dst, kPool + src, rowBytes);
    std::memcpy(vScratch.data() + dst, vPool + src, rowBytes);
  };
  for (int32_t pos = 0; pos < std::min(p.sink, p.length); pos++) gather(pos);
  for (int32_t pos = recentBegin; pos < p.length; pos++) gather(pos);

  parallelFor(
      ringLen,
      [&](int64_t begin, int64_t end) {
        for (int64_t slot = begin; slot < end; slot++) {
          const size_t dst = poolOffset(p.dstPageTable, int32_t(slot));
          std::memcpy(kPool + dst, kScratch.data() + slot * rowBytes, rowBytes);
          std::memcpy(vPool + dst, vScratch.data() + slot * rowBytes, rowBytes);
        }
      },
      64);
}

void gatherKv(const GatherKvParams& p) {
  const size_t rowBytes = size_t(p.hkv) * p.d * dtypeSize(p.dtype);
  parallelFor(
      p.length,
      [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; t++) {
          const size_t src = size_t(p.slots[t]) * rowBytes;
          std::memcpy(static_cast<uint8_t*>(p.k) + t * rowBytes, static_cast<const uint8_t*>(p.kPages) + src, rowBytes);
          std::memcpy(static_cast<uint8_t*>(p.v) + t * rowBytes, static_cast<const uint8_t*>(p.vPages) + src, rowBytes);
        }
      },
      64);
}

}  // namespace lt::cpu
