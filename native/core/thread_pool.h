// A fixed pool of worker threads for the CPU kernels. parallelFor splits [0, n) into
// chunks; the calling thread works too, so a pool of size 1 runs everything inline.
// Several callers (e.g. async kernels on libuv's threads) may use the pool at once.
#pragma once
#include <cstdint>
#include <functional>

namespace lt {

// Runs body(begin, end) over disjoint chunks covering [0, n). Exceptions thrown by the
// body are rethrown in the caller (the first one wins).
void parallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& body, int64_t minChunk = 1);

int threadCount();
// The most threads setThreadCount takes: far above any machine's cores, far below what exhausts
// the process's thread limit.
constexpr int kMaxThreads = 1024;
// Resizes the pool; 0 means one thread per hardware thread. If the system refuses a thread it
// throws std::runtime_error with the pool at its old size.
void setThreadCount(int threads);

}  // namespace lt
