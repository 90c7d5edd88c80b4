// Element types that cross the boundary and the scalar conversions between them.
// Kernels compute in f32: 16-bit inputs are widened on load and rounded (nearest-even)
// on store, so every backend rounds the same way.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace lt {

enum class DType : int32_t { F32 = 0, F16 = 1, BF16 = 2, I32 = 3 };

inline size_t dtypeSize(DType t) {
  switch (t) {
    case DType::F32:
      return 4;
    case DType::I32:
      return 4;
    case DType::F16:
      return 2;
    case DType::BF16:
      return 2;
  }
  return 0;
}

inline const char* dtypeName(DType t) {
  switch (t) {
    case DType::F32:
      return "f32";
    case DType::F16:
      return "f16";
    case DType::BF16:
      return "bf16";
    case DType::I32:
      return "i32";
  }
  return "?";
}

inline bool isFloatType(DType t) {
  return t != DType::I32;
}

inline float bitsToFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t floatToBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float bf16ToFloat(uint16_t h) {
  return bitsToFloat(uint32_t(h) << 16);
}

inline uint16_t floatToBf16(float f) {
  uint32_t u = floatToBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // keep NaN a NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

inline float f16ToFloat(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  if (exp == 0x1f) return bitsToFloat(sign | 0x7f800000u | (man << 13));
  if (exp == 0) {
    if (man == 0) return bitsToFloat(sign);
    // subnormal: value = man * 2^-24
    float v = float(man) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  return bitsToFloat(sign | ((exp + 112u) << 23) | (man << 13));
}

inline uint16_t floatToF16(float f) {
  uint32_t u = floatToBits(f);
  uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  uint32_t absu = u & 0x7fffffffu;
  if (absu > 0x7f800000u) return uint16_t(sign | 0x7e00u);
  if (absu >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520: infinity
  if (absu < 0x38800000u) {
    // result is subnormal (or zero): quantise to multiples of 2^-24, nearest-even
    float a = bitsToFloat(absu);
    float scaled = a * 16777216.0f;  // exact: power of two
    uint32_t m = uint32_t(scaled);
    float frac = scaled - float(m);
    if (frac > 0.5f || (frac == 0.5f && (m & 1u))) m++;
    return uint16_t(sign | m);
  }
  uint32_t exp = (absu >> 23) - 112u;
  uint32_t man = absu & 0x7fffffu;
  uint32_t h = (exp << 10) | (man >> 13);
  uint32_t rest = man & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
  return uint16_t(sign | h);
}

// Widen `n` elements of type `t` at `src` into f32.
inline void loadAsFloat(DType t, const void* src, size_t offset, size_t n, float* dst) {
  switch (t) {
    case DType::F32:
      std::memcpy(dst, static_cast<const float*>(src) + offset, n * 4);
      break;
    case DType::BF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src) + offset;
      for (size_t i = 0; i < n; i++) dst[i] = bf16ToFloat(s[i]);
      break;
    }
    case DType::F16: {
      const uint16_t* s = static_cast<const uint16_t*>(src) + offset;
      for (size_t i = 0; i < n; i++) dst[i] = f16ToFloat(s[i]);
      break;
    }
    case DType::I32: {
      const int32_t* s = static_cast<const int32_t*>(src) + offset;
      for (size_t i = 0; i < n; i++) dst[i] = float(s[i]);
      break;
    }
  }
}

// Round `n` f32 values in place to what type `t` would store (a no-op for f32).
inline void roundToDType(DType t, float* v, size_t n) {
  if (t == DType::BF16)
    for (size_t i = 0; i < n; i++) v[i] = bf16ToFloat(floatToBf16(v[i]));
  if (t == DType::F16)
    for (size_t i = 0; i < n; i++) v[i] = f16ToFloat(floatToF16(v[i]));
}

// Round `n` f32 values into type `t` at `dst`.
inline void storeFromFloat(DType t, const float* src, void* dst, size_t offset, size_t n) {
  switch (t) {
    case DType::F32:
      std::memcpy(static_cast<float*>(dst) + offset, src, n * 4);
      break;
    case DType::BF16: {
      uint16_t* d = static_cast<uint16_t*>(dst) + offset;
      for (size_t i = 0; i < n; i++) d[i] = floatToBf16(src[i]);
      break;
    }
    case DType::F16: {
      uint16_t* d = static_cast<uint16_t*>(dst) + offset;
      for (size_t i = 0; i < n; i++) d[i] = floatToF16(src[i]);
      break;
    }
    case DType::I32: {
      int32_t* d = static_cast<int32_t*>(dst) + offset;
      for (size_t i = 0; i < n; i++) d[i] = int32_t(src[i]);
      break;
    }
  }
}

}  // namespace lt
