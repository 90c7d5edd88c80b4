// The step timeline, a diagnostic build (CMake LT_STEP_TIMELINE=ON; `LIGHTTRANSFER_STEP_TIMELINE=on
// npm run build:native` builds it into build-timeline/): every block of the decode step's GEMVs
// and decode attention writes when it entered, when its wait for the kernel ahead returned and
// when it left, read off the global timer, to a buffer of its kernel's file. launchGraph clears
// the buffers before graph launch LT_TIMELINE_FIRST and writes them, one block a line, to
// LT_TIMELINE_FILE after launch LT_TIMELINE_LAST (launches counted from 1 over the process);
// tools/gpu/step_timeline.py reads them. Each record costs an atomic and a 40-byte write per
// block, ~1-2% of a batch-1 step (bench/README.md), and the instrumented kernels hold a little
// more state, so time builds without it against each other. In every other build the macros below
// are empty and no buffer exists.
#pragma once
#include <cuda_runtime.h>

#include <cstdio>

namespace lt::cuda {

// What a record's block was (tools/gpu/step_timeline.py reads the same numbers).
enum TimelineKind : unsigned int {
  kTimelineGemv = 0,
  kTimelineSplit = 1,    // a decode-attention split that left its partials (or wrote out itself)
  kTimelineMerge = 2,    // the split that arrived last and merged the others
  kTimelineNoTiles = 3,  // a planned split with no tiles of its sequence
};

struct TimelineEvent {
  // What the launch reads that no other launch of the step reads: the GEMV's weight, decode
  // attention's page-table view (one per layer in a decode step's index block).
  unsigned long long key;
  unsigned int kind, block;
  unsigned long long enter, waited, exit;
};

// A block's times so far, kept in shared memory by its thread 0 (not in every thread's registers).
struct BlockTimes {
  unsigned long long enter, waited;
};

__device__ __forceinline__ unsigned long long globalTimer() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

#if defined(LT_STEP_TIMELINE) && LT_STEP_TIMELINE

constexpr unsigned int kTimelineCapacity = 1u << 18;

// NAME's buffer and its host reset (ordered on `stream`) and dump (after the stream has finished),
// defined once in the kernel's file. Both return the first CUDA error; a dump of a full buffer says
// how many records did not fit.
#define LT_TIMELINE_BUFFER(NAME)                                                                              \
  __device__ ::lt::cuda::TimelineEvent NAME##Events[::lt::cuda::kTimelineCapacity];                           \
  __device__ unsigned int NAME##Count;                                                                        \
  cudaError_t NAME##Reset(cudaStream_t stream) {                                                              \
    static const unsigned int zero = 0;                                                                       \
    return cudaMemcpyToSymbolAsync(NAME##Count, &zero, sizeof zero, 0, cudaMemcpyHostToDevice, stream);       \
  }                                                                                                           \
  cudaError_t NAME##Dump(std::FILE* f) {                                                                      \
    unsigned int n = 0;                                                                                       \
    cudaError_t err = cudaMemcpyFromSymbol(&n, NAME##Count, sizeof n);                                        \
    if (err != cudaSuccess) return err;                                                                       \
    if (n > ::lt::cuda::kTimelineCapacity) {                                                                  \
      std::fprintf(stderr, "step timeline: " #NAME " recorded %u blocks, kept the first %u\n", n,             \
                   ::lt::cuda::kTimelineCapacity);                                                            \
      n = ::lt::cuda::kTimelineCapacity;                                                                      \
    }                                                                                                         \
    static ::lt::cuda::TimelineEvent host[::lt::cuda::kTimelineCapacity];                                     \
    err = cudaMemcpyFromSymbol(host, NAME##Events, sizeof(::lt::cuda::TimelineEvent) * n);                    \
    if (err != cudaSuccess) return err;                                                                       \
    for (unsigned int i = 0; i < n; i++)                                                                      \
      std::fprintf(f, "%u %llx %u %llu %llu %llu\n", host[i].kind, host[i].key, host[i].block, host[i].enter, \
                   host[i].waited, host[i].exit);                                                             \
    return cudaSuccess;                                                                                       \
  }

#define LT_TIMELINE_TIMES(TIMES) __shared__ ::lt::cuda::BlockTimes TIMES
#define LT_TIMELINE_ENTERED(TIMES)                                   \
  do {                                                               \
    if (threadIdx.x == 0) (TIMES).enter = ::lt::cuda::globalTimer(); \
  } while (0)
#define LT_TIMELINE_WAITED(TIMES)                                     \
  do {                                                                \
    if (threadIdx.x == 0) (TIMES).waited = ::lt::cuda::globalTimer(); \
  } while (0)
// Thread 0 of the block writes its record, leaving now.
#define LT_TIMELINE_RECORD(NAME, KIND, KEY, TIMES)                                          \
  do {                                                                                      \
    if (threadIdx.x == 0) {                                                                 \
      const unsigned int at = atomicAdd(&NAME##Count, 1u);                                  \
      if (at < ::lt::cuda::kTimelineCapacity)                                               \
        NAME##Events[at] = {(unsigned long long)(KEY),                                      \
                            (KIND),                                                         \
                            blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z), \
                            (TIMES).enter,                                                  \
                            (TIMES).waited,                                                 \
                            ::lt::cuda::globalTimer()};                                     \
    }                                                                                       \
  } while (0)

cudaError_t gemvTimelineReset(cudaStream_t stream);
cudaError_t gemvTimelineDump(std::FILE* f);
cudaError_t attentionTimelineReset(cudaStream_t stream);
cudaError_t attentionTimelineDump(std::FILE* f);

// launchGraph calls these around every graph launch on `stream` (step_timeline.cu).
void timelineBeforeGraphLaunch(cudaStream_t stream);
void timelineAfterGraphLaunch(cudaStream_t stream);

#else

#define LT_TIMELINE_BUFFER(NAME)
#define LT_TIMELINE_TIMES(TIMES)
#define LT_TIMELINE_ENTERED(TIMES) ((void)0)
#define LT_TIMELINE_WAITED(TIMES) ((void)0)
#define LT_TIMELINE_RECORD(NAME, KIND, KEY, TIMES) ((void)0)

inline void timelineBeforeGraphLaunch(cudaStream_t) {}
inline void timelineAfterGraphLaunch(cudaStream_t) {}

#endif

}  // namespace lt::cuda
