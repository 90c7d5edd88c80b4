#include "shared_checks.h"

namespace lt::addon {

// i32 index tables (page tables, slots) are checked on the host through checkIndices
// (graph.h): now, or on every launch of a graph the call is recorded into. The checks outlive
// the KernelArgs, so they report through failIndex with the op's name.
[[noreturn]] void failIndex(const std::string& op, const std::string& message) {
  throw Error(op + ": " + message);
}

void checkTokenId(const std::string& op, const char* name, int64_t index, int32_t id, int64_t vocab) {
  if (id < 0 || id >= vocab)
    failIndex(op, std::string(name) + "[" + std::to_string(index) + "] = " + std::to_string(id) +
                      " is outside the vocabulary 0.." + std::to_string(vocab - 1));
}

void checkPages(const std::string& op, const char* name, const int32_t* entries, size_t begin, size_t end,
                int32_t numPages, const std::string& where) {
  for (size_t i = begin; i < end; i++) {
    if (entries[i] < 0 || entries[i] >= numPages)
      failIndex(op, std::string(name) + where + " entry " + std::to_string(i) + " is page " +
                        std::to_string(entries[i]) + ", outside the pool's pages 0.." + std::to_string(numPages - 1));
  }
}

void checkGroup(const KernelArgs& a, int32_t hq, int32_t hkv, const char* kvName) {
  if (hkv == 0 || hq % hkv != 0)
    a.fail("q has " + std::to_string(hq) + " heads, not a multiple of the " + std::to_string(hkv) + " kv heads of " +
           kvName + " (GQA)");
  if (hq / hkv > kMaxGroup)
    a.fail("q has " + std::to_string(hq / hkv) + " heads per kv head; at most " + std::to_string(kMaxGroup) +
           " are supported");
}

// Kernels compute sink + window (a ring's length) in int32.
void checkRing(const KernelArgs& a, int32_t sink, int32_t window) {
  a.narrow("sink + window", int64_t(sink) + window);
}

// Checks a K/V pair against the page pool they are written into.
void checkPool(KernelArgs& a, TensorObject* kPages, TensorObject* vPages) {
  a.expectRank("kPages", kPages, 4);
  a.expectFloat("kPages", kPages);
  a.expectShape("vPages", vPages, kPages->shape());
  a.expectDType("vPages", vPages, kPages->dtype());
}

void checkPoolWritten(KernelArgs& a, TensorObject* kPages, TensorObject* vPages) {
  checkPool(a, kPages, vPages);
  if (overlaps(kPages, vPages)) a.fail("kPages overlaps vPages: give K and V pools of their own");
}

}  // namespace lt::addon
