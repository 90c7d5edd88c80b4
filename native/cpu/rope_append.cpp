// CPU ropeAppendKv (params in native/core/model_params.h): the stacked q|k|v rows are split
// into q (the output) and contiguous k and v, then rope and appendKv run on them as they would
// after three separate projections — so the CPU result is the unfused path's, by construction.
#include <cstring>
#include <vector>

#include "core/attention_params.h"
#include "cpu_kernels.h"

namespace lt::cpu {

void ropeAppendKv(const RopeAppendKvParams& p) {
  const size_t elem = dtypeSize(p.dtype);
  const size_t qRow = size_t(p.hq) * p.d * elem, kvRow = size_t(p.hkv) * p.d * elem;
  const size_t width = qRow + 2 * kvRow;
  std::vector<uint8_t> k(size_t(p.tokens) * kvRow), v(size_t(p.tokens) * kvRow);
  const auto* qkv = static_cast<const uint8_t*>(p.qkv);
  for (int32_t t = 0; t < p.tokens; t++) {
    const uint8_t* row = qkv + size_t(t) * width;
    std::memcpy(static_cast<uint8_t*>(p.q) + size_t(t) * qRow, row, qRow);
    std::memcpy(&k[size_t(t) * kvRow], row + qRow, kvRow);
    std::memcpy(&v[size_t(t) * kvRow], row + qRow + kvRow, kvRow);
  }
  RopeParams r;
  r.dtype = p.dtype;
  r.q = p.q, r.k = k.data(), r.positions = p.positions, r.invFreq = p.invFreq;
  r.tokens = p.tokens, r.hq = p.hq, r.hkv = p.hkv, r.d = p.d;
  rope(r);
  AppendKvParams a;
  a.dtype = p.dtype;
  a.k = k.data(), a.v = v.data(), a.kPages = p.kPages, a.vPages = p.vPages, a.slots = p.slots;
  a.tokens = p.tokens, a.hkv = p.hkv, a.d = p.d, a.pageSize = p.pageSize, a.numPages = p.numPages;
  appendKv(a);
}

}  // namespace lt::cpu
