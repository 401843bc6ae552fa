// Deterministic inputs for the golden-byte tests. Integer arithmetic only, so every float
// is exactly the same on every platform and compiler (no <random> distributions, no libm).
// The golden bytes in golden_ggml.inc were produced by feeding exactly these arrays to
// ggml's own quantizers (see kquants_golden_test.cpp).
#pragma once

#include <cstdint>
#include <vector>

namespace qsweep::kquants::golden {

inline uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/// n weights: roughly normal (sum of four 16-bit uniforms, exact in float), with a scale that
/// changes every 16 weights (1/8 .. 4), every 61st weight an 8x outlier, and every 7th group
/// of 32 all zero (exercises the "all zero" branches).
inline std::vector<float> weights(uint64_t seed, int64_t n) {
  std::vector<float> x(static_cast<size_t>(n));
  uint64_t s = seed;
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t u = splitmix64(s);
    const int64_t sum = int64_t(u & 0xffff) + int64_t((u >> 16) & 0xffff) +
                        int64_t((u >> 32) & 0xffff) + int64_t((u >> 48) & 0xffff) - 2 * 65535;
    float v = static_cast<float>(sum) * (1.0f / 131072.0f);        // exact: |sum| < 2^18
    v *= static_cast<float>(1 << ((i / 16) % 6)) * (1.0f / 8.0f);  // exact power of two
    if (i % 61 == 0) v *= 8.0f;
    if ((i / 32) % 7 == 6) v = 0.0f;
    x[static_cast<size_t>(i)] = v;
  }
  return x;
}

/// n positive importances spanning about three decades, exact in float, some of them zero.
inline std::vector<float> imatrix(uint64_t seed, int64_t n) {
  std::vector<float> w(static_cast<size_t>(n));
  uint64_t s = seed;
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t u = splitmix64(s);
    const int level = static_cast<int>(u % 11);  // 2^-5 .. 2^5
    const float frac = 1.0f + static_cast<float>((u >> 8) & 0xff) * (1.0f / 256.0f);
    w[static_cast<size_t>(i)] =
        (u >> 20) % 23 == 0 ? 0.0f : frac * static_cast<float>(1 << level) / 32.0f;
  }
  return w;
}

/// FNV-1a 64 of a byte string (for the large-tensor digests).
inline uint64_t fnv1a64(const uint8_t* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace qsweep::kquants::golden
