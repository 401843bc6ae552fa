// 32-weight block formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (ggml-quants.c reference paths).
#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstring>

#include "backends/kernels/ggml_decode.h"
#include "quantizers/kquants/detail/quant_helpers.h"
#include "quantizers/kquants/kquants.h"

namespace qsweep::kquants {
// For all of ggml's block types: backends/kernels/ggml_decode.h (the decoders shared with CUDA)
// reads the blocks at these byte offsets.
static_assert(offsetof(block_q4_0, qs) == 2);
static_assert(offsetof(block_q4_1, m) == 2 && offsetof(block_q4_1, qs) == 4);
static_assert(offsetof(block_q5_0, qh) == 2 && offsetof(block_q5_0, qs) == 6);
static_assert(offsetof(block_q5_1, m) == 2 && offsetof(block_q5_1, qh) == 4 &&
              offsetof(block_q5_1, qs) == 8);
static_assert(offsetof(block_q8_0, qs) == 2);
static_assert(offsetof(block_q2_K, qs) == 16 && offsetof(block_q2_K, d) == 80 &&
              offsetof(block_q2_K, dmin) == 82);
static_assert(offsetof(block_q3_K, qs) == 32 && offsetof(block_q3_K, scales) == 96 &&
              offsetof(block_q3_K, d) == 108);
static_assert(offsetof(block_q4_K, dmin) == 2 && offsetof(block_q4_K, scales) == 4 &&
              offsetof(block_q4_K, qs) == 16);
static_assert(offsetof(block_q5_K, scales) == 4 && offsetof(block_q5_K, qh) == 16 &&
              offsetof(block_q5_K, qs) == 48);
static_assert(offsetof(block_q6_K, qh) == 128 && offsetof(block_q6_K, scales) == 192 &&
              offsetof(block_q6_K, d) == 208);
}  // namespace qsweep::kquants

namespace qsweep::kquants {

using detail::blocks_in;

namespace {

// ggml's (int8_t)(v) followed by MIN(hi, .): truncation toward zero; v is in range here.
inline uint8_t trunc_min(float v, int hi) {
  return static_cast<uint8_t>(std::min(hi, static_cast<int>(v)));
}

// Index of the element with the largest |x| (first one on ties) -> its signed value.
inline float signed_absmax(const float* xb, int n) {
  float amax = 0.0f;
  float max = 0.0f;
  for (int j = 0; j < n; ++j) {
    if (amax < std::fabs(xb[j])) {
      amax = std::fabs(xb[j]);
      max = xb[j];
    }
  }
  return max;
}

inline void min_max(const float* xb, int n, float* min, float* max) {
  *min = FLT_MAX;
  *max = -FLT_MAX;
  for (int j = 0; j < n; ++j) {
    if (xb[j] < *min) *min = xb[j];
    if (xb[j] > *max) *max = xb[j];
  }
}

inline void store_qh(uint8_t* dst, uint32_t qh) {
  for (int k = 0; k < 4; ++k) dst[k] = static_cast<uint8_t>(qh >> (8 * k));
}
inline uint32_t load_qh(const uint8_t* src) {
  return uint32_t(src[0]) | uint32_t(src[1]) << 8 | uint32_t(src[2]) << 16 | uint32_t(src[3]) << 24;
}

// Packs 32 five-bit levels: low nibbles of j and j+16 into qs[j], bit 4 into qh.
inline void pack_q5(const uint8_t* L, uint8_t* qs, uint8_t* qh_bytes) {
  uint32_t qh = 0;
  for (int j = 0; j < kQK / 2; ++j) {
    const uint8_t xi0 = L[j];
    const uint8_t xi1 = L[j + kQK / 2];
    qs[j] = static_cast<uint8_t>((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
    qh |= ((xi0 & 0x10u) >> 4) << j;
    qh |= ((xi1 & 0x10u) >> 4) << (j + kQK / 2);
  }
  store_qh(qh_bytes, qh);
}

// The per-row sigma^2 of the imatrix paths of the 32-weight formats.
inline float row_sigma2(const float* x, int64_t n) {
  float sum_x2 = 0;
  for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  return sum_x2 / static_cast<float>(n);
}

inline void importance(const float* xb, const float* qw, float sigma2, float* weight) {
  for (int j = 0; j < kQK; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
}

}  // namespace

// ---- Q4_0 ------------------------------------------------------------------------------

void quantize_row_q4_0_ref(const float* x, void* blocks, int64_t n) {
  const int64_t nb = blocks_in(n, kQK, "Q4_0");
  auto* y = static_cast<block_q4_0*>(blocks);
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + i * kQK;
    const float d = signed_absmax(xb, kQK) / -8;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = float_to_half(d);
    for (int j = 0; j < kQK / 2; ++j) {
      const uint8_t lo = trunc_min(xb[j] * id + 8.5f, 15);
      const uint8_t hi = trunc_min(xb[j + kQK / 2] * id + 8.5f, 15);
      y[i].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

void quantize_row_q4_0(const float* x, void* blocks, int64_t n, const float* imatrix) {
  if (!imatrix) return quantize_row_q4_0_ref(x, blocks, n);
  const int64_t nb = blocks_in(n, kQK, "Q4_0");
  auto* y = static_cast<block_q4_0*>(blocks);
  const float sigma2 = row_sigma2(x, n);
  float weight[kQK];
  int8_t L[kQK];
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + i * kQK;
    importance(xb, imatrix + i * kQK, sigma2, weight);
    const float d = detail::make_qx_quants(kQK, 8, xb, L, 1, weight);
    y[i].d = float_to_half(d);
    for (int j = 0; j < kQK / 2; ++j) y[i].qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
  }
}

void dequantize_row_q4_0(const void* blocks, float* y, int64_t n) {
  const int64_t nb = blocks_in(n, kQK, "Q4_0");
  static_assert(sizeof(block_q4_0) == size_t(ggml::block_bytes(ggml::kQ4_0)));
  const auto* x = static_cast<const uint8_t*>(blocks);
  for (int64_t i = 0; i < nb; ++i)
    for (int e = 0; e < kQK; ++e) y[i * kQK + e] = ggml::decode_q4_0(x + i * sizeof(block_q4_0), e);
}

// ---- Q4_1 ------------------------------------------------------------------------------

void quantize_row_q4_1_ref(const float* x, void* blocks, int64_t n) {
  const int64_t nb = blocks_in(n, kQK, "Q4_1");
  auto* y = static_cast<block_q4_1*>(blocks);
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + i * kQK;
    float min, max;
    min_max(xb, kQK, &min, &max);
    const float d = (max - min) / 15;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = float_to_half(d);
    y[i].m = float_to_half(min);
    for (int j = 0; j < kQK / 2; ++j) {
      const uint8_t lo = trunc_min((xb[j] - min) * id + 0.5f, 15);
      const uint8_t hi = trunc_min((xb[j + kQK / 2] - min) * id + 0.5f, 15);
      y[i].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

void quantize_row_q4_1(const float* x, void* blocks, int64_t n, const float* imatrix) {
  if (!imatrix) return quantize_row_q4_1_ref(x, blocks, n);
  const int64_t nb = blocks_in(n, kQK, "Q4_1");
  auto* y = static_cast<block_q4_1*>(blocks);
  const float sigma2 = row_sigma2(x, n);
  float weight[kQK];
  uint8_t L[kQK], Laux[kQK];
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + i * kQK;
    importance(xb, imatrix + i * kQK, sigma2, weight);
    float min;
    const float d =
        detail::make_qkx3_quants(kQK, 15, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36, false);
    y[i].d = float_to_half(d);
    y[i].m = float_to_half(-min);
    for (int j = 0; j < kQK / 2; ++j) y[i].qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
  }
}

void dequantize_row_q4_1(const void* blocks, float* y, int64_t n) {
  const int64_t nb = blocks_in(n, kQK, "Q4_1");
  static_assert(sizeof(block_q4_1) == size_t(ggml::block_bytes(ggml::kQ4_1)));
  const auto* x = static_cast<const uint8_t*>(blocks);
  for (int64_t i = 0; i < nb; ++i)
    for (int e = 0; e < kQK; ++e) y[i * kQK + e] = ggml::decode_q4_1(x + i * sizeof(block_q4_1), e);
}

// ---- Q5_0 ------------------------------------------------------------------------------

void quantize_row_q5_0_ref(const float* x, void* blocks, int64_t n) {
  const int64_t nb = blocks_in(n, kQK, "Q5_0");
  auto* y = static_cast<block_q5_0*>(blocks);
  uint8_t L[kQK];
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + i * kQK;
    const float d = signed_absmax(xb, kQK) / -16;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = float_to_half(d);
    for (int j = 0; j < kQK; ++j) L[j] = trunc_min(xb[j] * id + 16.5f, 31);
    pack_q5(L, y[i].qs, y[i].qh);
  }
}

void quantize_row_q5_0(const float* x, void* blocks, int64_t n, const float* imatrix) {
  if (!imatrix) return quantize_row_q5_0_ref(x, blocks, n);
  const int64_t nb = blocks_in(n, kQK, "Q5_0");
  auto* y = static_cast<block_q5_0*>(blocks);
  const float sigma2 = row_sigma2(x, n);
  float weight[kQK];
  int8_t L[kQK];
  uint8_t U[kQK];
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + i * kQK;
    importance(xb, imatrix + i * kQK, sigma2, weight);
    const float d = detail::make_qx_quants(kQK, 16, xb, L, 1, weight);
    y[i].d = float_to_half(d);
    for (int j = 0; j < kQK; ++j) U[j] = static_cast<uint8_t>(L[j]);
    pack_q5(U, y[i].qs, y[i].qh);
  }
}

void dequantize_row_q5_0(const void* blocks, float* y, int64_t n) {
  const int64_t nb = blocks_in(n, kQK, "Q5_0");
  static_assert(sizeof(block_q5_0) == size_t(ggml::block_bytes(ggml::kQ5_0)));
  const auto* x = static_cast<const uint8_t*>(blocks);
  for (int64_t i = 0; i < nb; ++i)
    for (int e = 0; e < kQK; ++e) y[i * kQK + e] = ggml::decode_q5_0(x + i * sizeof(block_q5_0), e);
}

// ---- Q5_1 ------------------------------------------------------------------------------

void quantize_row_q5_1_ref(const float* x, void* blocks, int64_t n) {
  const int64_t nb = blocks_in(n, kQK, "Q5_1");
  auto* y = static_cast<block_q5_1*>(blocks);
  uint8_t L[kQK];
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + i * kQK;
    float min, max;
    min_max(xb, kQK, &min, &max);
    const float d = (max - min) / 31;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = float_to_half(d);
    y[i].m = float_to_half(min);
    // ggml's plain (uint8_t)(v): no clamp, v is in [0, 31.5].
    for (int j = 0; j < kQK; ++j)
      L[j] = static_cast<uint8_t>(static_cast<int>((xb[j] - min) * id + 0.5f));
    pack_q5(L, y[i].qs, y[i].qh);
  }
}

void quantize_row_q5_1(const float* x, void* blocks, int64_t n, const float* imatrix) {
  if (!imatrix) return quantize_row_q5_1_ref(x, blocks, n);
  const int64_t nb = blocks_in(n, kQK, "Q5_1");
  auto* y = static_cast<block_q5_1*>(blocks);
  const float sigma2 = row_sigma2(x, n);
  float weight[kQK];
  uint8_t L[kQK], Laux[kQK];
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + i * kQK;
    importance(xb, imatrix + i * kQK, sigma2, weight);
    float min;
    const float d =
        detail::make_qkx3_quants(kQK, 31, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36, false);
    y[i].d = float_to_half(d);
    y[i].m = float_to_half(-min);
    pack_q5(L, y[i].qs, y[i].qh);
  }
}

void dequantize_row_q5_1(const void* blocks, float* y, int64_t n) {
  const int64_t nb = blocks_in(n, kQK, "Q5_1");
  static_assert(sizeof(block_q5_1) == size_t(ggml::block_bytes(ggml::kQ5_1)));
  const auto* x = static_cast<const uint8_t*>(blocks);
  for (int64_t i = 0; i < nb; ++i)
    for (int e = 0; e < kQK; ++e) y[i * kQK + e] = ggml::decode_q5_1(x + i * sizeof(block_q5_1), e);
}

// ---- Q8_0 ------------------------------------------------------------------------------

// ggml's running `amax = amax > |x| ? amax : |x|` over one block: without a NaN that is the
// largest |x| (exact in any order), taken here 8 lanes at a time; with a NaN the sequential
// loop (a NaN resets the running value) decides.
inline float block_amax(const float* xb) {
  using VF = float __attribute__((vector_size(32)));
  using VI = int32_t __attribute__((vector_size(32)));
  static_assert(kQK % 8 == 0);
  VF m = VF{} * 0.0f;
  VI nan = VI{} * 0;
  for (int j = 0; j < kQK; j += 8) {
    VF v;
    std::memcpy(&v, xb + j, sizeof(VF));
    v = std::bit_cast<VF>(std::bit_cast<VI>(v) & 0x7fffffff);
    nan |= v != v;
    m = m > v ? m : v;
  }
  bool any_nan = false;
  float amax = 0.0f;
  for (int k = 0; k < 8; ++k) {
    any_nan |= nan[k] != 0;
    amax = amax > m[k] ? amax : m[k];
  }
  if (any_nan) {
    amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = amax > std::fabs(xb[j]) ? amax : std::fabs(xb[j]);
  }
  return amax;
}

// std::round(v) (halves away from zero) for |v| < 2^31, without the libm call, so that the
// loop vectorizes: a - trunc(a) is exact, and rounds up exactly when it is >= 0.5.
inline int round_half_away(float v) {
  const float a = std::fabs(v);
  const int t = static_cast<int>(a);
  const int r = t + (a - static_cast<float>(t) >= 0.5f ? 1 : 0);
  return v < 0 ? -r : r;
}

void quantize_row_q8_0_ref(const float* x, void* blocks, int64_t n) {
  const int64_t nb = blocks_in(n, kQK, "Q8_0");
  auto* y = static_cast<block_q8_0*>(blocks);
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + i * kQK;
    const float amax = block_amax(xb);
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = float_to_half(d);
    for (int j = 0; j < kQK; ++j) y[i].qs[j] = static_cast<int8_t>(round_half_away(xb[j] * id));
  }
}

// ggml's quantize_q8_0 ignores the importance matrix.
void quantize_row_q8_0(const float* x, void* blocks, int64_t n, const float* /*imatrix*/) {
  quantize_row_q8_0_ref(x, blocks, n);
}

void dequantize_row_q8_0(const void* blocks, float* y, int64_t n) {
  const int64_t nb = blocks_in(n, kQK, "Q8_0");
  static_assert(sizeof(block_q8_0) == size_t(ggml::block_bytes(ggml::kQ8_0)));
  const auto* x = static_cast<const uint8_t*>(blocks);
  for (int64_t i = 0; i < nb; ++i)
    for (int e = 0; e < kQK; ++e) y[i * kQK + e] = ggml::decode_q8_0(x + i * sizeof(block_q8_0), e);
}

}  // namespace qsweep::kquants
