// IEEE binary16 and bfloat16 <-> float conversions, exact (round-to-nearest-even).
// Plain bit manipulation so that the same code runs under the sanitizers and on
// any CPU; the hot loops convert once at load time, so speed is secondary.
#pragma once

#include <cstdint>
#include <cstring>

#include "common/hd.h"

namespace qsweep {

// QS_HD: the CUDA twins (backends/kernels/) decode fp16 scales with these same functions.
QS_HD inline float bits_to_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}
QS_HD inline uint32_t float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

/// binary16 -> float (exact: every half is representable as a float).
QS_HD inline float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  if (exp == 0) {
    // zero or subnormal: man * 2^-24
    float v = float(man) * (1.0f / 16777216.0f);
    return (sign ? -v : v);
  }
  if (exp == 31) return bits_to_float(sign | 0x7f800000u | (man << 13));  // inf / nan
  return bits_to_float(sign | ((exp + 112) << 23) | (man << 13));
}

/// float -> binary16, round to nearest even; overflow gives +-inf, NaN stays NaN.
QS_HD inline uint16_t float_to_half(float f) {
  const uint32_t u = float_to_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t abs = u & 0x7fffffffu;
  if (abs >= 0x7f800000u) return uint16_t(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0));
  if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520 -> inf
  if (abs < 0x38800000u) {                                  // below the smallest normal half
    // subnormal: value / 2^-24, rounded to nearest even integer
    const float v = bits_to_float(abs) * 16777216.0f;
    uint32_t m = uint32_t(v);
    const float rem = v - float(m);
    if (rem > 0.5f || (rem == 0.5f && (m & 1u))) ++m;
    return uint16_t(sign | m);
  }
  const uint32_t e = ((abs >> 23) - 112) << 10;
  const uint32_t m = (abs >> 13) & 0x3ffu;
  uint32_t h = e | m;
  const uint32_t rest = abs & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // carry may bump the exponent: fine
  return uint16_t(sign | h);
}

QS_HD inline float bf16_to_float(uint16_t b) {
  return bits_to_float(uint32_t(b) << 16);
}

QS_HD inline uint16_t float_to_bf16(float f) {
  uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

}  // namespace qsweep
