// Argument checks that several op families share: a K/V pair against its page pool, index tables checked against the
// pool (attention's page tables, the cache ops' slots), the streaming ring's size, and the lazy-ratio options that the
// fused (prefillAttention) and standalone (lazyRatio) forms both read.
#pragma once
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>

#include "core/attention_params.h"
#include "core/model_params.h"
#include "validate.h"

namespace lt::addon {

constexpr int32_t kMaxDim = std::numeric_limits<int32_t>::max();
constexpr int32_t kMaxHeadDim = 256;
// Query heads per kv head: the CPU kernels keep scores for a whole group per task (the largest
// models have 16; multi-query models up to ~128).
constexpr int32_t kMaxGroup = 256;
// Fails unless hq is a multiple of hkv with at most kMaxGroup query heads per kv head.
void checkGroup(const KernelArgs& a, int32_t hq, int32_t hkv, const char* kvName);

[[noreturn]] void failIndex(const std::string& op, const std::string& message);
// Entries [begin, end) of a page table (name + where) are pages of the pool.
void checkPages(const std::string& op, const char* name, const int32_t* entries, size_t begin, size_t end,
                int32_t numPages, const std::string& where);
// A token id (name[index]) within the vocabulary: embedding's ids, the logits ops' targets and ids.
void checkTokenId(const std::string& op, const char* name, int64_t index, int32_t id, int64_t vocab);
void checkRing(const KernelArgs& a, int32_t sink, int32_t window);
void checkPool(KernelArgs& a, TensorObject* kPages, TensorObject* vPages);
// checkPool, for a kernel that writes the pools: they must also be apart.
void checkPoolWritten(KernelArgs& a, TensorObject* kPages, TensorObject* vPages);
// lazy_ratio.cpp
LazyRatioSpec readRatioSpec(KernelArgs& a);

// kv_cache.cpp: the target of RoPE + the K/V append (ropeAppendKv, and linear's ropeAppendKv
// output), read from `a` for the query heads q [tokens, hq, d] (d the pool's head dim; named
// qName in errors): positions, slots [tokens] (i32), invFreq [d/2] (f32) and the pool pair,
// checked against the pool and q's shape (the caller checks the dtypes, of q too). params has
// every field but qkv; its slots are set by checkRopeAppendSlots, which checks their values (-1
// skips a token) once the caller has checked the devices.
struct RopeAppendTarget {
  TensorObject *positions = nullptr, *invFreq = nullptr, *slots = nullptr, *kPages = nullptr, *vPages = nullptr;
  RopeAppendKvParams params;
};
RopeAppendTarget readRopeAppendTarget(KernelArgs& a, TensorObject* q, const char* qName);
void checkRopeAppendSlots(KernelArgs& a, RopeAppendTarget& t);

}  // namespace lt::addon
