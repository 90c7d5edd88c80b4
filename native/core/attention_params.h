// One plain struct per kernel call. The addon layer fills these after validating every
// shape, dtype, device and index; the CPU and CUDA kernels trust them.
//
// Layouts (all contiguous, token-major as the QKV projection emits them):
//   q            [nq, hq, d]          queries of one sequence (prefill) or one per sequence (decode)
//   k, v         [nk, hkv, d]         keys/values after RoPE, absolute positions 0..nk-1
//   kPages/vPages[numPages, pageSize, hkv, d]   the page pool of one device
//   lse          [nq, hq] f32         natural-log log-sum-exp of the scaled scores of each row
//   lazyRatio    [hq] f32             per-head lazy ratio (mean over the last queries)
// Query i of a prefill call sits at absolute position nk - nq + i (bottom-right causal
// alignment), so a later chunk of a long prompt attends to all earlier keys. Those earlier
// keys are either the first rows of k/v or, for a chunk over a cached prefix, read from the
// sequence's pages (CachedPrefix).
#pragma once
#include <cstdint>
#include <string>

#include "dtype.h"
#include "error.h"

namespace lt {

// Streaming mask of DESIGN.md section 2: key j is visible to query q iff
// j <= q and (j < sink or q - j < window).
struct StreamingMask {
  bool enabled = false;
  int32_t sink = 0;
  int32_t window = 0;
};

// Lazy ratio of DESIGN.md section 2: the attention mass of the last `lastQueries`
// queries on Sink ∪ Recent (each key counted once, causal), averaged per head.
struct LazyRatioSpec {
  bool enabled = false;
  int32_t sink = 0;
  int32_t window = 0;
  int32_t lastQueries = 0;
};

// Positions [0, length) of one sequence's layer cache, read through its page table by a
// prefill call whose own k/v then hold positions [length, nk). Logical slot s lives at pool
// slot pageTable[s / pageSize] * pageSize + s % pageSize. A full cache holds position p at
// slot p; a ring holds p at p if p < ringSink, else ringSink + (p - ringSink) mod ringWindow,
// so of the positions >= ringSink only the last ringWindow are still there. The addon checks
// that the streaming mask never lets a query see a position the ring no longer holds.
struct CachedPrefix {
  bool enabled = false;
  const void* kPages = nullptr;  // [numPages, pageSize, hkv, d], dtype of q
  const void* vPages = nullptr;
  const int32_t* pageTable = nullptr;  // the pages of slots [0, min(length, ring capacity))
  int32_t length = 0;
  int32_t pageSize = 0, numPages = 0;
  bool ring = false;
  int32_t ringSink = 0, ringWindow = 0;
};

// Which CUDA prefill kernel runs a call (the CPU has one): Auto takes wgmma on compute
// capability 9.0 (H100, H200) and mma.sync elsewhere; the next two force one, for tests and
// benchmarks (Wgmma on another GPU is an error); Unspecified (the call made no choice) follows
// LIGHTTRANSFER_PREFILL_KERNEL, else Auto.
enum class PrefillKernel { Auto, MmaSync, Wgmma, Unspecified };

// The PrefillKernel a name gives: "auto", "mmaSync" or "wgmma", as the JS API and
// LIGHTTRANSFER_PREFILL_KERNEL spell them. `what` names where the name came from and `remedy`
// ends the error for any other name.
inline PrefillKernel parsePrefillKernel(const std::string& name, const std::string& what,
                                        const std::string& remedy = "") {
  if (name == "auto") return PrefillKernel::Auto;
  if (name == "mmaSync") return PrefillKernel::MmaSync;
  if (name == "wgmma") return PrefillKernel::Wgmma;
  throw Error(what + " must be auto, mmaSync or wgmma, not '" + name + "'" + remedy);
}

struct PrefillAttentionParams {
  DType dtype = DType::F32;  // q, k, v and out
  const void* q = nullptr;
  const void* k = nullptr;  // positions [cached.length, nk); null when nk == cached.length
  const void* v = nullptr;
  void* out = nullptr;
  float* lse = nullptr;        // optional
  float* lazyRatio = nullptr;  // optional, requires ratio.enabled
  int32_t nq = 0, nk = 0, hq = 0, hkv = 0, d = 0;
  float scale = 0.f;
  StreamingMask mask;
  LazyRatioSpec ratio;
  CachedPrefix cached;
  PrefillKernel kernel = PrefillKernel::Unspecified;
};

struct DecodeAttentionParams {
  DType dtype = DType::F32;  // q, pages and out
  const void* q = nullptr;   // [batch, hq, d]
  const void* kPages = nullptr;
  const void* vPages = nullptr;
  const int32_t* pageTable = nullptr;  // [batch, maxPagesPerSeq]
  const int32_t* seqLens = nullptr;    // [batch] valid slots per sequence (ring: min(len, S+W))
  void* out = nullptr;                 // [batch, hq, d]
  float* lse = nullptr;                // optional [batch, hq]
  int32_t batch = 0, hq = 0, hkv = 0, d = 0;
  int32_t pageSize = 0, numPages = 0, maxPagesPerSeq = 0;
  float scale = 0.f;
};

// Writes token t's K/V rows into slot slots[t] = page * pageSize + offset of the pool; a slot of
// -1 skips the token. Slots must not repeat (the order of writes within a call is unspecified).
struct AppendKvParams {
  DType dtype = DType::F32;
  const void* k = nullptr;  // [tokens, hkv, d]
  const void* v = nullptr;
  void* kPages = nullptr;
  void* vPages = nullptr;
  const int32_t* slots = nullptr;  // [tokens]
  int32_t tokens = 0, hkv = 0, d = 0, pageSize = 0, numPages = 0;
};

// Gathers the sinks and the last `window` tokens of a full cache of `length` tokens into
// the ring layout (token p -> slot p if p < sink, else sink + (p - sink) mod window) on the
// pages of dstPageTable. Source and destination pages may overlap: the gather goes
// through a scratch buffer.
struct CutToStreamingParams {
  DType dtype = DType::F32;
  void* kPages = nullptr;
  void* vPages = nullptr;
  const int32_t* srcPageTable = nullptr;  // ceil(length / pageSize) entries
  const int32_t* dstPageTable = nullptr;  // ceil(min(length, sink + window) / pageSize) entries
  int32_t length = 0, sink = 0, window = 0;
  int32_t hkv = 0, d = 0, pageSize = 0, numPages = 0;
};

// Copies pool slots slots[0..length) (page * pageSize + offset) into contiguous k/v
// [length, hkv, d]: the keys a later chunk of a long prompt attends to, in position order.
struct GatherKvParams {
  DType dtype = DType::F32;
  const void* kPages = nullptr;
  const void* vPages = nullptr;
  const int32_t* slots = nullptr;  // [length]
  void* k = nullptr;
  void* v = nullptr;
  int32_t length = 0, hkv = 0, d = 0, pageSize = 0, numPages = 0;
};

// Standalone lazy ratio from the queries, keys and the LSE the prefill produced.
// q and lse hold the trailing nq queries (positions nk - nq .. nk - 1).
struct LazyRatioParams {
  DType dtype = DType::F32;    // q and k
  const void* q = nullptr;     // [nq, hq, d]
  const void* k = nullptr;     // [nk, hkv, d]
  const float* lse = nullptr;  // [nq, hq]
  float* ratio = nullptr;      // [hq]
  int32_t nq = 0, nk = 0, hq = 0, hkv = 0, d = 0;
  float scale = 0.f;
  LazyRatioSpec spec;
};

}  // namespace lt
