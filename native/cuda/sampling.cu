// CUDA sampling helpers (params and contracts in native/core/model_params.h), identical to
// native/cpu/sampling.cpp but where noted:
//   topCandidates: per row of logits the largest logit, the softmax mass at the row's
//     temperature, and the index and value of every logit >= the k-th largest, so that topK / topP
//     sampling reads a few values per row instead of the whole row. Everything but the mass is
//     exact; the mass is summed in f32 with the fast exp2 (relative error ~1e-6, the CPU sums in
//     f64).
//   repetitionPenalty: transformers' penalty on the tokens each row has seen, in place.
//   argmax: the index of each row's largest logit, exactly as torch.argmax picks it.
//   tokenLogprobs: the log-probability of one given token per row, summed in f32 (the CPU sums
//     in f64; relative error ~1e-6).
//
// argmaxKernel<T, kVec>: grid rows, block 1024, one CTA per row; each thread issues four 16-byte
//   loads (4 f32 or 8 f16/bf16 logits each) before comparing any, when vocab fills whole loads
//   and the logits are 16-byte aligned, else one element at a time. Values compare as integer
//   keys made from their f32 bits (argmaxKey): NaN counts as the largest value and the lowest
//   index wins among equal values, exactly as in native/cpu/sampling.cpp and torch.argmax.
// topCandidatesKernel<T, kVec>: grid rows, block 1024, one CTA per row; static shared memory
//   8 KiB for a 2048-bin histogram and about 530 bytes of reduction scratch. Values compare as
//   unsigned keys made from their f32 bits (sortKey), because --use_fast_math compiles float
//   compares with .ftz, which would tie a subnormal with zero; -0 takes +0's key and NaN key 0,
//   below every number, so NaNs drop out of every count. The k-th largest key is found by radix
//   select over digits of 11, 11 and 10 bits: a block-wide scan of a digit's histogram from the
//   top bin finds the bin holding it, and the next digit is histogrammed among the keys with the
//   prefix found so far. The CTA reads its row (from L2 after the first time):
//   1. the largest key, lowest index among equals (its element is max, with the sign of zero the
//      CPU keeps: the first), and the histogram of the keys' top 11 bits;
//   2. the histogram of the next 11 bits, and mass = Σ 2^((x − max) · log2(e)/T);
//   3. for f32 only, the last 10 bits (an f16 or bf16 value is fixed by its key's top 22 bits);
//   4. every element whose key is >= the k-th key is appended through a shared counter, one
//      atomic per warp (ballot); ids/scores are stored while the slot is below capacity and all
//      are counted.
//   Passes 2-3 are skipped once the bin found holds exactly the keys still wanted (the prefix
//   then selects them all); the mass is summed in pass 4 when pass 2 did not run.
//   Loads: each thread has 16 logits in flight per step (four 16-byte f32 loads or two 16-byte
//   f16/bf16 loads) when vocab fills whole loads and the logits are 16-byte aligned, else 16
//   scalar loads.
//
// tokenLogprobsKernel<T>: grid rows, block 512, one CTA per row, 128 bytes of shared memory;
//   each thread keeps a running (max, Σ exp(x − max)) over its strided share of the row,
//   rescaling the sum when the max grows, and the pairs are merged by warp shuffles and then
//   across warps. A NaN anywhere in the row makes the answer NaN, as on the CPU (checked on the
//   bits: comparisons alone would pass a NaN by).
// repetitionPenaltyKernel<T>: grid rows, block 256, one CTA per row, no shared memory; the
//   threads stride over the row's ids (hundreds to tens of thousands: the tokens seen so far),
//   one scattered read-modify-write of a logit each. Distinct ids within a row (checked on the
//   host) keep the updates free of races. The division is __fdiv_rn: --use_fast_math would
//   otherwise make x / p an approximate reciprocal-multiply, a few ulp off the CPU's. Its .ftz
//   arithmetic still flushes f32 and bf16 subnormal logits to zero, as the contract allows, and
//   a NaN logit comes out as the GPU's canonical NaN, whose bits may differ from the CPU's NaN.
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "cuda/cuda_kernels.h"
#include "model_common.cuh"

namespace lt::cuda {
namespace {

constexpr int kBlock = 1024;
constexpr int kStep = 16;           // logits a thread has in flight
constexpr int kBins = 2048;         // the widest digit, 11 bits
constexpr int kTopShift = 32 - 11;  // the first digit: the keys' top 11 bits
static_assert(kBins == 2 * kBlock, "pickBin gives each thread two bins");

// Every lane of a 16-byte word set to 0x7fff / 0x7fff7fff is a NaN as f16, bf16 and f32.
constexpr uint32_t kNanWord = 0x7fff7fffu;
constexpr uint32_t kNegInfKey = 0x007fffffu;  // sortKey(-inf): the smallest key of a number

// An unsigned key that orders as the f32 values do, from their bits: negatives flipped whole,
// positives with the sign bit set. -0 takes +0's key as -0 == +0; NaN gets 0, which no number
// has (sortKey(-inf) is kNegInfKey).
__device__ __forceinline__ uint32_t sortKey(uint32_t bits) {
  if ((bits & 0x7fffffffu) > 0x7f800000u) return 0;
  if (bits == 0x80000000u) bits = 0;
  return bits ^ (uint32_t(int(bits) >> 31) | 0x80000000u);
}

// Calls f(bits, i) with the f32 bits of every element i of the row, each thread visiting its
// indices in increasing order. All threads make the same number of calls (past the end they get
// NaN bits, which every pass ignores), so f may use warp-wide intrinsics.
template <typename T, bool kVec, typename F>
__device__ __forceinline__ void forEachLogit(const T* __restrict__ row, int vocab, F&& f) {
  if constexpr (kVec) {
    constexpr int kPer = 16 / sizeof(T);
    constexpr int kLoads = kStep / kPer;
    const uint4* row16 = reinterpret_cast<const uint4*>(row);
    const int n16 = vocab / kPer;
    for (int base = threadIdx.x; base - int(threadIdx.x) < n16; base += kLoads * kBlock) {
      uint4 v[kLoads];
#pragma unroll
      for (int u = 0; u < kLoads; u++) {
        const int i = base + u * kBlock;
        v[u] = i < n16 ? row16[i] : make_uint4(kNanWord, kNanWord, kNanWord, kNanWord);
      }
#pragma unroll
      for (int u = 0; u < kLoads; u++) {
        uint32_t b[kPer];
        f32Bits16(v[u], T{}, b);
#pragma unroll
        for (int e = 0; e < kPer; e++) f(b[e], kPer * (base + u * kBlock) + e);
      }
    }
  } else {
    for (int base = threadIdx.x; base - int(threadIdx.x) < vocab; base += kStep * kBlock) {
      uint32_t b[kStep];
#pragma unroll
      for (int u = 0; u < kStep; u++) {
        const int i = base + u * kBlock;
        b[u] = i < vocab ? f32Bits(row[i]) : kNanWord;
      }
#pragma unroll
      for (int u = 0; u < kStep; u++) f(b[u], base + u * kBlock);
    }
  }
}

// Which histogram bin holds the want-th largest key counted (want clamped to the count), how
// far into that bin it is, and how many keys the bin holds.
struct Pick {
  uint32_t bin, rank, inBin;
};

// A block-wide scan of hist from the top bin; every thread gets the pick. hist must be complete
// (synchronised); the caller synchronises before overwriting hist, warpSums or out.
__device__ __forceinline__ Pick pickBin(const uint32_t* hist, uint32_t want, uint32_t* warpSums, Pick* out) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int hi = kBins - 1 - 2 * int(threadIdx.x);  // this thread's bins: hi, then hi - 1
  const uint32_t h0 = hist[hi], h1 = hist[hi - 1];
  uint32_t incl = h0 + h1;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const uint32_t n = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += n;
  }
  if (lane == 31) warpSums[warp] = incl;
  __syncthreads();
  const uint32_t own = warpSums[lane];
  uint32_t w = own;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const uint32_t n = __shfl_up_sync(0xffffffffu, w, o);
    if (lane >= o) w += n;
  }
  const uint32_t total = __shfl_sync(0xffffffffu, w, 31);
  const uint32_t above = __shfl_sync(0xffffffffu, w - own, warp) + incl - h0 - h1;  // keys in higher bins
  want = min(want, total);
  if (above < want && want <= above + h0) *out = Pick{uint32_t(hi), want - above, h0};
  if (above + h0 < want && want <= above + h0 + h1) *out = Pick{uint32_t(hi - 1), want - above - h0, h1};
  __syncthreads();
  return *out;
}

// At least one CTA per SM: left to itself ptxas aims at two, squeezes into 32 registers and spills.
template <typename T, bool kVec>
__global__ void __launch_bounds__(kBlock, 1)
    topCandidatesKernel(const T* __restrict__ logits, const float* __restrict__ temperature, int32_t* __restrict__ ids,
                        float* __restrict__ scores, int32_t* __restrict__ countOut, float* __restrict__ maxOut,
                        float* __restrict__ massOut, int vocab, int k, int capacity) {
  __shared__ uint32_t hist[kBins];
  __shared__ uint32_t bestKeys[32], warpSums[32];
  __shared__ int bestIdx[32];
  __shared__ float massScratch[32];
  __shared__ Pick pick;
  __shared__ uint32_t appended;
  const int r = blockIdx.x;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const T* row = logits + size_t(r) * vocab;

  for (int b = threadIdx.x; b < kBins; b += kBlock) hist[b] = 0;
  if (threadIdx.x == 0) appended = 0;
  __syncthreads();

  // 1. The largest key (a strict > keeps each thread's lowest index among equal keys) and the top
  // digit's histogram.
  uint32_t best = 0;
  int bestI = INT_MAX;
  forEachLogit<T, kVec>(row, vocab, [&](uint32_t bits, int i) {
    const uint32_t key = sortKey(bits);
    if (key == 0) return;
    atomicAdd(&hist[key >> kTopShift], 1u);
    if (key > best) {
      best = key;
      bestI = i;
    }
  });
  warpBestKey(best, bestI);
  if (lane == 0) {
    bestKeys[warp] = best;
    bestIdx[warp] = bestI;
  }
  __syncthreads();
  best = bestKeys[lane];
  bestI = bestIdx[lane];
  warpBestKey(best, bestI);
  if (best == 0) {  // all NaN
    if (threadIdx.x == 0) {
      countOut[r] = 0;
      maxOut[r] = -INFINITY;
      massOut[r] = 0.f;
    }
    return;
  }
  const float maxV = __uint_as_float(f32Bits(row[bestI]));
  const bool hasMass = best != kNegInfKey;  // else the CPU's mass is 0 (and x − max would be NaN)
  const float scale = __fdiv_rn(1.4426950408889634f, temperature[r]);  // log2(e) / T
  float mass = 0.f;
  auto addMass = [&](uint32_t bits, uint32_t key) {
    if (hasMass && key != 0) mass += exp2f((__uint_as_float(bits) - maxV) * scale);
  };

  // 2-3. prefix holds the k-th largest key's bits above `shift`, want its rank among the keys
  // with that prefix.
  Pick p = pickBin(hist, uint32_t(k), warpSums, &pick);
  uint32_t prefix = p.bin, want = p.rank;
  int shift = kTopShift;
  bool massDone = false;
  constexpr int kExactShift = sizeof(T) == 4 ? 0 : 10;
  while (shift > kExactShift && p.inBin != want) {
    const int bits = shift > 10 ? 11 : 10;
    __syncthreads();
    for (int b = threadIdx.x; b < kBins; b += kBlock) hist[b] = 0;
    __syncthreads();
    shift -= bits;
    const uint32_t mask = (1u << bits) - 1;
    forEachLogit<T, kVec>(row, vocab, [&](uint32_t v, int) {
      const uint32_t key = sortKey(v);
      if ((key >> (shift + bits)) == prefix) atomicAdd(&hist[(key >> shift) & mask], 1u);
      if (!massDone) addMass(v, key);
    });
    massDone = true;
    __syncthreads();
    p = pickBin(hist, want, warpSums, &pick);
    prefix = (prefix << bits) | p.bin;
    want = p.rank;
  }

  // 4. Every key >= the k-th; prefix > 0, so NaN's key 0 never passes.
  int32_t* rowIds = ids + size_t(r) * capacity;
  float* rowScores = scores + size_t(r) * capacity;
  forEachLogit<T, kVec>(row, vocab, [&](uint32_t bits, int i) {
    const uint32_t key = sortKey(bits);
    if (!massDone) addMass(bits, key);
    const bool take = (key >> shift) >= prefix;
    const uint32_t ballot = __ballot_sync(0xffffffffu, take);
    if (ballot == 0) return;
    const int leader = __ffs(ballot) - 1;
    uint32_t slot = 0;
    if (lane == leader) slot = atomicAdd(&appended, uint32_t(__popc(ballot)));
    slot = __shfl_sync(0xffffffffu, slot, leader) + __popc(ballot & ((1u << lane) - 1));
    if (take && slot < uint32_t(capacity)) {
      rowIds[slot] = i;
      rowScores[slot] = __uint_as_float(bits);
    }
  });
  mass = blockSum(mass, massScratch);  // its barrier also completes `appended`
  if (threadIdx.x == 0) {
    countOut[r] = int32_t(appended);
    maxOut[r] = maxV;
    massOut[r] = mass;
  }
}

template <typename T>
void launchTopCandidates(const TopCandidatesParams& p, cudaStream_t stream) {
  const T* logits = static_cast<const T*>(p.logits);
  // Every row starts 16-byte aligned when the first does and vocab fills whole 16-byte loads.
  if (p.vocab % (16 / sizeof(T)) == 0 && aligned16({p.logits})) {
    topCandidatesKernel<T, true><<<p.rows, kBlock, 0, stream>>>(logits, p.temperature, p.ids, p.scores, p.count, p.max,
                                                                p.mass, p.vocab, p.k, p.capacity);
  } else {
    topCandidatesKernel<T, false><<<p.rows, kBlock, 0, stream>>>(logits, p.temperature, p.ids, p.scores, p.count, p.max,
                                                                 p.mass, p.vocab, p.k, p.capacity);
  }
  throwIfLaunchFailed("topCandidates", "topCandidatesKernel");
}

constexpr int kPenaltyBlock = 256;

template <typename T>
__global__ void __launch_bounds__(kPenaltyBlock)
    repetitionPenaltyKernel(T* __restrict__ logits, const int32_t* __restrict__ ids,
                            const int32_t* __restrict__ offsets, const float* __restrict__ penalty, int vocab) {
  const int r = blockIdx.x;
  const int end = offsets[r + 1];
  const float p = penalty[r];
  T* row = logits + size_t(r) * vocab;
  for (int i = offsets[r] + int(threadIdx.x); i < end; i += kPenaltyBlock) {
    T& v = row[ids[i]];
    const float x = toF(v);
    v = fromF<T>(x > 0.f ? __fdiv_rn(x, p) : x * p);
  }
}

// ----------------------------------------------------------------------------- tokenLogprobs
constexpr int kLogprobBlock = 512;
constexpr float kLog2e = 1.4426950408889634f;

// (m, s) ∪ (m2, s2) as one running (max, sum of exp(x − max)); an empty side has s = 0 and
// adds nothing (its max may be -inf, whose difference with another -inf is NaN).
__device__ __forceinline__ void mergeLogSum(float& m, float& s, float m2, float s2) {
  const float top = fmaxf(m, m2);
  s = (s > 0.f ? s * exp2f((m - top) * kLog2e) : 0.f) + (s2 > 0.f ? s2 * exp2f((m2 - top) * kLog2e) : 0.f);
  m = top;
}

template <typename T>
__global__ void __launch_bounds__(kLogprobBlock)
    tokenLogprobsKernel(const T* __restrict__ logits, const int32_t* __restrict__ targets, float* out, int vocab) {
  __shared__ float sm[kLogprobBlock / 32], ss[kLogprobBlock / 32];
  const T* row = logits + size_t(blockIdx.x) * vocab;
  float m = -INFINITY, s = 0.f;
  bool nan = false;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
    const float x = toF(row[i]);
    if ((f32Bits(row[i]) & 0x7fffffffu) > 0x7f800000u) {
      nan = true;
    } else if (x > m) {
      s = (s > 0.f ? s * exp2f((m - x) * kLog2e) : 0.f) + 1.f;
      m = x;
    } else if (x != -INFINITY) {
      s += exp2f((x - m) * kLog2e);
    }
  }
  const bool rowHasNaN = __syncthreads_or(nan);
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1)
    mergeLogSum(m, s, __shfl_xor_sync(0xffffffffu, m, offset), __shfl_xor_sync(0xffffffffu, s, offset));
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) sm[warp] = m, ss[warp] = s;
  __syncthreads();
  if (warp == 0) {
    m = lane < kLogprobBlock / 32 ? sm[lane] : -INFINITY;
    s = lane < kLogprobBlock / 32 ? ss[lane] : 0.f;
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1)
      mergeLogSum(m, s, __shfl_xor_sync(0xffffffffu, m, offset), __shfl_xor_sync(0xffffffffu, s, offset));
    if (lane == 0) out[blockIdx.x] = rowHasNaN ? NAN : toF(row[targets[blockIdx.x]]) - m - logf(s);
  }
}

// ----------------------------------------------------------------------------- argmax
constexpr int kArgmaxBlock = 1024;
constexpr int kArgmaxLoads = 4;  // 16-byte loads a thread issues before comparing any

// An int that orders as argmax ranks f32 values, from their bits. Comparing floats would not
// do: --use_fast_math compiles comparisons with .ftz, which would tie a subnormal with zero
// where the CPU (and torch) see the subnormal as larger. NaNs share the top key, so among them
// the lowest index wins; -0 takes +0's key, as -0 == +0.
__device__ __forceinline__ int argmaxKey(uint32_t bits) {
  if ((bits & 0x7fffffffu) > 0x7f800000u) return INT_MAX;
  if (bits == 0x80000000u) bits = 0;
  const int k = int(bits);
  return k ^ ((k >> 31) & 0x7fffffff);  // negatives: larger magnitude, smaller key
}

template <typename T, bool kVec>
__global__ void __launch_bounds__(kArgmaxBlock) argmaxKernel(const T* __restrict__ logits, int32_t* out, int vocab) {
  __shared__ int sk[32];
  __shared__ int si[32];
  const T* row = logits + size_t(blockIdx.x) * vocab;
  // Every key is above INT_MIN. A thread visits its indices in increasing order, so a strict >
  // keeps its lowest index among equal keys.
  int best = INT_MIN, bestI = INT_MAX;
  auto take = [&](uint32_t bits, int i) {
    const int k = argmaxKey(bits);
    if (k > best) {
      best = k;
      bestI = i;
    }
  };
  if constexpr (kVec) {
    // One CTA streams a whole row (0.5 MB of f32 logits for a 128K vocabulary), so the bytes a
    // thread has in flight set its speed.
    constexpr int kPer = 16 / sizeof(T);
    const uint4* row16 = reinterpret_cast<const uint4*>(row);
    const int n16 = vocab / kPer, stride = blockDim.x;
    int i = threadIdx.x;
    for (; i + (kArgmaxLoads - 1) * stride < n16; i += kArgmaxLoads * stride) {
      uint4 v[kArgmaxLoads];
#pragma unroll
      for (int u = 0; u < kArgmaxLoads; u++) v[u] = row16[i + u * stride];
#pragma unroll
      for (int u = 0; u < kArgmaxLoads; u++) {
        uint32_t b[kPer];
        f32Bits16(v[u], T{}, b);
#pragma unroll
        for (int e = 0; e < kPer; e++) take(b[e], kPer * (i + u * stride) + e);
      }
    }
    for (; i < n16; i += stride) {
      const uint4 v = row16[i];
      uint32_t b[kPer];
      f32Bits16(v, T{}, b);
#pragma unroll
      for (int e = 0; e < kPer; e++) take(b[e], kPer * i + e);
    }
  } else {
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) take(f32Bits(row[i]), i);
  }
  warpBestKey(best, bestI);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) {
    sk[warp] = best;
    si[warp] = bestI;
  }
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x >> 5;
    best = lane < warps ? sk[lane] : INT_MIN;
    bestI = lane < warps ? si[lane] : INT_MAX;
    warpBestKey(best, bestI);
    if (lane == 0) out[blockIdx.x] = bestI;
  }
}

template <typename T>
void launchArgmax(const ArgmaxParams& p, cudaStream_t stream) {
  const T* logits = static_cast<const T*>(p.logits);
  // Every row starts 16-byte aligned when the first does and vocab fills whole 16-byte loads.
  if (p.vocab % (16 / sizeof(T)) == 0 && aligned16({p.logits})) {
    argmaxKernel<T, true><<<p.rows, kArgmaxBlock, 0, stream>>>(logits, p.out, p.vocab);
  } else {
    argmaxKernel<T, false><<<p.rows, kArgmaxBlock, 0, stream>>>(logits, p.out, p.vocab);
  }
  throwIfLaunchFailed("argmax", "argmaxKernel");
}

}  // namespace

void topCandidates(const TopCandidatesParams& p, cudaStream_t stream) {
  if (p.rows < 0) throw Error("topCandidates: rows must be >= 0, got " + std::to_string(p.rows));
  if (p.vocab < 1) throw Error("topCandidates: vocab must be positive, got " + std::to_string(p.vocab));
  if (p.k < 1 || p.k > p.capacity || p.k > p.vocab)
    throw Error("topCandidates: need 1 <= k <= capacity and k <= vocab, got k " + std::to_string(p.k) + ", capacity " +
                std::to_string(p.capacity) + ", vocab " + std::to_string(p.vocab));
  if (p.rows == 0) return;
  withFloatType(p.dtype, "topCandidates", "the logits", [&](auto t) { launchTopCandidates<decltype(t)>(p, stream); });
}

void repetitionPenalty(const RepetitionPenaltyParams& p, cudaStream_t stream) {
  if (p.rows < 0) throw Error("repetitionPenalty: rows must be >= 0, got " + std::to_string(p.rows));
  if (p.vocab < 1) throw Error("repetitionPenalty: vocab must be positive, got " + std::to_string(p.vocab));
  if (p.rows == 0) return;
  withFloatType(p.dtype, "repetitionPenalty", "the logits", [&](auto t) {
    using T = decltype(t);
    repetitionPenaltyKernel<T>
        <<<p.rows, kPenaltyBlock, 0, stream>>>(static_cast<T*>(p.logits), p.ids, p.offsets, p.penalty, p.vocab);
  });
  throwIfLaunchFailed("repetitionPenalty", "repetitionPenaltyKernel");
}

void tokenLogprobs(const TokenLogprobsParams& p, cudaStream_t stream) {
  if (p.rows <= 0) return;
  if (p.vocab <= 0) throw Error("tokenLogprobs: vocab must be positive, got " + std::to_string(p.vocab));
  withFloatType(p.dtype, "tokenLogprobs", "the logits", [&](auto t) {
    using T = decltype(t);
    tokenLogprobsKernel<T>
        <<<p.rows, kLogprobBlock, 0, stream>>>(static_cast<const T*>(p.logits), p.targets, p.out, p.vocab);
  });
  throwIfLaunchFailed("tokenLogprobs", "tokenLogprobsKernel");
}

void argmax(const ArgmaxParams& p, cudaStream_t stream) {
  if (p.rows <= 0) return;
  if (p.vocab <= 0) throw Error("argmax: vocab must be positive, got " + std::to_string(p.vocab));
  withFloatType(p.dtype, "argmax", "the logits", [&](auto t) { launchArgmax<decltype(t)>(p, stream); });
}

}  // namespace lt::cuda
