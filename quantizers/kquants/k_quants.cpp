// 256-weight super-block formats: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K
// (ggml-quants.c: quantize_row_*_ref, quantize_row_*_impl, dequantize_row_*).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>

#include "backends/kernels/ggml_decode.h"
#include "quantizers/kquants/detail/quant_helpers.h"
#include "quantizers/kquants/kquants.h"

namespace qsweep::kquants {

using detail::blocks_in;
using detail::get_scale_min_k4;
using detail::make_qkx2_quants_lanes;
using detail::make_qkx3_quants;
using detail::make_qp_quants;
using detail::make_qx_quants;
using detail::nearest_int;

namespace {

inline int clamp(int v, int lo, int hi) {
  return std::max(lo, std::min(hi, v));
}

// 2-bit planes (Q2_K, Q3_K): element e -> qs[32*(e/128) + e%32], bits 2*((e%128)/32).
inline void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < kQK_K; j += 128) {
    for (int l = 0; l < 32; ++l) {
      qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                           (L[j + l + 96] << 6));
    }
  }
}

// 4-bit nibbles (Q4_K, and the low bits of Q5_K): element e -> qs[32*(e/64) + e%32],
// low nibble for e%64 < 32.
inline void pack_4bit(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < kQK_K; j += 64) {
    for (int l = 0; l < 32; ++l) {
      qs[j / 2 + l] = static_cast<uint8_t>((L[j + l] & 0xF) | ((L[j + l + 32] & 0xF) << 4));
    }
  }
}

// Bit 4 of the Q5_K levels: element e -> bit e/32 of qh[e%32].
inline void pack_q5k_high(const uint8_t* L, uint8_t* qh) {
  std::memset(qh, 0, kQK_K / 8);
  for (int e = 0; e < kQK_K; ++e) {
    if (L[e] > 15) qh[e % 32] = static_cast<uint8_t>(qh[e % 32] | (1u << (e / 32)));
  }
}

// Q3_K: levels in [0, 8); bit 2 goes to hmask (bit e/32 of hmask[e%32]), the rest to qs.
// Branch-free (ggml tests l > 3 and subtracts 4: the same bits for levels in [0, 8)).
inline void pack_q3k(const int8_t* L, block_q3_K& b) {
  for (int c = 0; c < 32; ++c) {
    unsigned h = 0;
    for (int k = 0; k < kQK_K / 32; ++k) h |= static_cast<unsigned>(L[32 * k + c] > 3) << k;
    b.hmask[c] = static_cast<uint8_t>(h);
  }
  uint8_t low[kQK_K];
  for (int e = 0; e < kQK_K; ++e) low[e] = static_cast<uint8_t>(L[e] & 3);
  pack_2bit(low, b.qs);
}

// Q3_K: stores 6-bit level l (0..63) of sub-block j into the 12 packed scale bytes
// (caller zeroes them first).
inline void set_q3k_scale(uint8_t* scales, int j, int l) {
  if (j < 8) {
    scales[j] = static_cast<uint8_t>(l & 0xF);
  } else {
    scales[j - 8] = static_cast<uint8_t>(scales[j - 8] | ((l & 0xF) << 4));
  }
  l >>= 4;
  scales[j % 4 + 8] = static_cast<uint8_t>(scales[j % 4 + 8] | (l << (2 * (j / 4))));
}

// Q3_K: final levels from the stored (fp16-rounded) super-block scale and 6-bit scales.
inline void requantize_q3k(const float* x, const block_q3_K& b, int8_t* L) {
  const float d_all = half_to_float(b.d);
  for (int j = 0; j < kQK_K / 16; ++j) {
    // ggml keeps the scale in an int8_t before the multiply: same value.
    const float d = d_all * static_cast<float>(detail::q3k_scale(b.scales, j));
    if (d == 0) continue;
    for (int ii = 0; ii < 16; ++ii) {
      const int l = clamp(nearest_int(x[16 * j + ii] / d), -4, 3);
      L[16 * j + ii] = static_cast<int8_t>(l + 4);
    }
  }
}

// Q4_K / Q5_K: final levels in [0, nmax] from the stored d, dmin and 6-bit (scale, min).
inline void requantize_qk_min(const float* x, const uint8_t* scales, uint16_t d_bits,
                              uint16_t dmin_bits, int nmax, uint8_t* L) {
  for (int j = 0; j < kQK_K / 32; ++j) {
    uint8_t sc, m;
    get_scale_min_k4(j, scales, &sc, &m);
    const float d = half_to_float(d_bits) * static_cast<float>(sc);
    if (d == 0) continue;
    const float dm = half_to_float(dmin_bits) * static_cast<float>(m);
    for (int ii = 0; ii < 32; ++ii) {
      L[32 * j + ii] = static_cast<uint8_t>(clamp(nearest_int((x[32 * j + ii] + dm) / d), 0, nmax));
    }
  }
}

// Q2_K: final levels in [0, 3] from the stored d, dmin and 4-bit (scale, min).
inline void requantize_q2k(const float* x, const block_q2_K& b, uint8_t* L) {
  const float dd = half_to_float(b.d);
  const float dmin = half_to_float(b.dmin);
  for (int j = 0; j < kQK_K / 16; ++j) {
    const float d = dd * static_cast<float>(b.scales[j] & 0xF);
    if (d == 0) continue;
    const float dm = dmin * static_cast<float>(b.scales[j] >> 4);
    for (int ii = 0; ii < 16; ++ii) {
      L[16 * j + ii] = static_cast<uint8_t>(clamp(nearest_int((x[16 * j + ii] + dm) / d), 0, 3));
    }
  }
}

// Q6_K: levels in [0, 64) -> ql (low nibbles) and qh (2-bit pairs).
inline void pack_q6k(const int8_t* L, block_q6_K& b) {
  for (int c = 0; c < 2; ++c) {
    uint8_t* ql = b.ql + 64 * c;
    uint8_t* qh = b.qh + 32 * c;
    const int8_t* Lc = L + 128 * c;
    for (int l = 0; l < 32; ++l) {
      const int q1 = Lc[l] & 0xF, q2 = Lc[l + 32] & 0xF;
      const int q3 = Lc[l + 64] & 0xF, q4 = Lc[l + 96] & 0xF;
      ql[l] = static_cast<uint8_t>(q1 | (q3 << 4));
      ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
      qh[l] = static_cast<uint8_t>((Lc[l] >> 4) | ((Lc[l + 32] >> 4) << 2) |
                                   ((Lc[l + 64] >> 4) << 4) | ((Lc[l + 96] >> 4) << 6));
    }
  }
}

// The common tail of Q6_K's ref and imatrix paths, given the 16 sub-block scales.
// L holds the levels from the scale search; they are recomputed from the stored scales.
void finish_q6k(const float* x, const float* scales, int8_t* L, block_q6_K& b) {
  float max_scale = 0;
  float max_abs_scale = 0;
  for (int ib = 0; ib < kQK_K / 16; ++ib) {
    const float abs_scale = std::fabs(scales[ib]);
    if (abs_scale > max_abs_scale) {
      max_abs_scale = abs_scale;
      max_scale = scales[ib];
    }
  }
  if (max_abs_scale < detail::kGroupMaxEps) {
    std::memset(&b, 0, sizeof(b));
    b.d = float_to_half(0.f);
    return;
  }
  const float iscale = -128.f / max_scale;
  b.d = float_to_half(1 / iscale);
  for (int ib = 0; ib < kQK_K / 16; ++ib) {
    b.scales[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
  }
  const float d_all = half_to_float(b.d);
  for (int j = 0; j < kQK_K / 16; ++j) {
    const float d = d_all * static_cast<float>(b.scales[j]);
    if (d == 0) continue;
    for (int ii = 0; ii < 16; ++ii) {
      L[16 * j + ii] = static_cast<int8_t>(clamp(nearest_int(x[16 * j + ii] / d), -32, 31) + 32);
    }
  }
  pack_q6k(L, b);
}

// sigma^2 = factor * mean(x^2) over one super-block, as the K-quant imatrix paths use it.
inline float superblock_sigma2(const float* x, float factor) {
  float sum_x2 = 0;
  for (int l = 0; l < kQK_K; ++l) sum_x2 += x[l] * x[l];
  return factor * sum_x2 / kQK_K;
}

// The scale searches of the ref quantizers run on the sub-blocks of up to kChunk super-blocks
// at once (one vector lane each); the rest of each block's encoding follows block by block.
constexpr int kChunk = 4;

// Super-blocks in the chunk that starts at block i of nb.
inline int chunk_at(int64_t nb, int64_t i) {
  return static_cast<int>(std::min<int64_t>(kChunk, nb - i));
}

// Q4_K / Q5_K without an imatrix: the sub-blocks (32 values, weights av_x + |x| as ggml) of the
// nc super-blocks at x searched side by side; levels, scales and mins per sub-block.
void search_qk45_chunk(const float* x, int nc, int nmax, float rmin, int nstep, float* weights,
                       uint8_t* L, float* scales, float* mins) {
  for (int j = 0; j < nc * kQK_K / 32; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[32 * j + l] = av_x + std::fabs(x[32 * j + l]);
  }
  make_qkx2_quants_lanes(nc * kQK_K / 32, 32, nmax, x, weights, L, scales, mins, rmin, 0.1f, nstep,
                         false);
}

}  // namespace

// ---- Q2_K ------------------------------------------------------------------------------

void quantize_row_q2_K_ref(const float* x, void* blocks, int64_t n) {
  const int64_t nb = blocks_in(n, kQK_K, "Q2_K");
  auto* y = static_cast<block_q2_K*>(blocks);
  uint8_t chunk_L[kChunk * kQK_K];
  float weights[kChunk * kQK_K];
  float chunk_mins[kChunk * kQK_K / 16];
  float chunk_scales[kChunk * kQK_K / 16];
  const float q4scale = 15.f;

  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    const int c = static_cast<int>(i % kChunk);
    if (c == 0) {
      const int nc = chunk_at(nb, i);
      for (int l = 0; l < nc * kQK_K; ++l) weights[l] = std::fabs(x[l]);
      make_qkx2_quants_lanes(nc * kQK_K / 16, 16, 3, x, weights, chunk_L, chunk_scales, chunk_mins,
                             -0.5f, 0.1f, 15, true);
    }
    uint8_t* L = chunk_L + kQK_K * c;
    const float* scales = chunk_scales + kQK_K / 16 * c;
    const float* mins = chunk_mins + kQK_K / 16 * c;
    float max_scale = 0;  // scales are non-negative since the min is subtracted
    float max_min = 0;
    for (int j = 0; j < kQK_K / 16; ++j) {
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0) {
      const float iscale = q4scale / max_scale;
      for (int j = 0; j < kQK_K / 16; ++j) {
        y[i].scales[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
      }
      y[i].d = float_to_half(max_scale / q4scale);
    } else {
      std::memset(y[i].scales, 0, sizeof(y[i].scales));
      y[i].d = float_to_half(0.f);
    }
    if (max_min > 0) {
      const float iscale = q4scale / max_min;
      for (int j = 0; j < kQK_K / 16; ++j) {
        const int l = nearest_int(iscale * mins[j]);
        y[i].scales[j] = static_cast<uint8_t>(y[i].scales[j] | (l << 4));
      }
      y[i].dmin = float_to_half(max_min / q4scale);
    } else {
      y[i].dmin = float_to_half(0.f);
    }
    requantize_q2k(x, y[i], L);
    pack_2bit(L, y[i].qs);
  }
}

void quantize_row_q2_K(const float* x, void* blocks, int64_t n, const float* imatrix) {
  if (!imatrix) return quantize_row_q2_K_ref(x, blocks, n);
  const int64_t nb = blocks_in(n, kQK_K, "Q2_K");
  auto* y = static_cast<block_q2_K*>(blocks);
  uint8_t L[kQK_K];
  uint8_t Laux[16];
  float mins[kQK_K / 16];
  float scales[kQK_K / 16];
  float sw[kQK_K / 16];
  float weight[16];
  uint8_t Ls[kQK_K / 16], Lm[kQK_K / 16];

  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    const float sigma2 = superblock_sigma2(x, 1.0f);
    for (int j = 0; j < kQK_K / 16; ++j) {
      const float* qw = imatrix + kQK_K * i + 16 * j;
      for (int l = 0; l < 16; ++l)
        weight[l] = qw[l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
      sw[j] = 0;
      for (int l = 0; l < 16; ++l) sw[j] += weight[l];
      scales[j] = make_qkx3_quants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f,
                                   0.05f, 36, false);
    }
    const float dm = make_qp_quants(kQK_K / 16, 15, scales, Ls, sw);
    const float mm = make_qp_quants(kQK_K / 16, 15, mins, Lm, sw);
    y[i].d = float_to_half(dm);
    y[i].dmin = float_to_half(mm);
    for (int j = 0; j < kQK_K / 16; ++j)
      y[i].scales[j] = static_cast<uint8_t>(Ls[j] | (Lm[j] << 4));
    requantize_q2k(x, y[i], L);
    pack_2bit(L, y[i].qs);
  }
}

// ---- Q3_K ------------------------------------------------------------------------------

void quantize_row_q3_K_ref(const float* x, void* blocks, int64_t n) {
  const int64_t nb = blocks_in(n, kQK_K, "Q3_K");
  auto* y = static_cast<block_q3_K*>(blocks);
  int8_t chunk_L[kChunk * kQK_K];
  float chunk_scales[kChunk * kQK_K / 16];

  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    const int c = static_cast<int>(i % kChunk);
    if (c == 0) {
      detail::make_q3_quants_lanes(chunk_at(nb, i) * kQK_K / 16, 16, 4, x, chunk_L, chunk_scales);
    }
    int8_t* L = chunk_L + kQK_K * c;
    const float* scales = chunk_scales + kQK_K / 16 * c;
    float max_scale = 0;
    float amax = 0;
    for (int j = 0; j < kQK_K / 16; ++j) {
      const float scale = std::fabs(scales[j]);
      if (scale > amax) {
        amax = scale;
        max_scale = scales[j];
      }
    }
    std::memset(y[i].scales, 0, sizeof(y[i].scales));
    if (max_scale != 0) {
      const float iscale = -32.f / max_scale;
      for (int j = 0; j < kQK_K / 16; ++j) {
        // ggml stores nearest_int(.) in an int8_t before clamping; |value| <= 32 here.
        const int l = clamp(static_cast<int8_t>(nearest_int(iscale * scales[j])), -32, 31) + 32;
        set_q3k_scale(y[i].scales, j, l);
      }
      y[i].d = float_to_half(1 / iscale);
    } else {
      y[i].d = float_to_half(0.f);
    }
    requantize_q3k(x, y[i], L);
    pack_q3k(L, y[i]);
  }
}

void quantize_row_q3_K(const float* x, void* blocks, int64_t n, const float* imatrix) {
  if (!imatrix) return quantize_row_q3_K_ref(x, blocks, n);
  const int64_t nb = blocks_in(n, kQK_K, "Q3_K");
  auto* y = static_cast<block_q3_K*>(blocks);
  int8_t L[kQK_K];
  float scales[kQK_K / 16];
  float weight[16];
  float sw[kQK_K / 16];
  int8_t Ls[kQK_K / 16];

  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    const float sigma2 = superblock_sigma2(x, 2.0f);
    for (int j = 0; j < kQK_K / 16; ++j) {
      const float* qw = imatrix + kQK_K * i + 16 * j;
      for (int l = 0; l < 16; ++l)
        weight[l] = qw[l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
      float sumw = 0;
      for (int l = 0; l < 16; ++l) sumw += weight[l];
      sw[j] = sumw;
      scales[j] = make_qx_quants(16, 4, x + 16 * j, L + 16 * j, 1, weight);
    }
    std::memset(y[i].scales, 0, sizeof(y[i].scales));
    const float d_block = make_qx_quants(kQK_K / 16, 32, scales, Ls, 1, sw);
    for (int j = 0; j < kQK_K / 16; ++j) set_q3k_scale(y[i].scales, j, Ls[j]);
    y[i].d = float_to_half(d_block);
    requantize_q3k(x, y[i], L);
    pack_q3k(L, y[i]);
  }
}

// ---- Q4_K ------------------------------------------------------------------------------

void quantize_row_q4_K_ref(const float* x, void* blocks, int64_t n) {
  const int64_t nb = blocks_in(n, kQK_K, "Q4_K");
  auto* y = static_cast<block_q4_K*>(blocks);
  uint8_t chunk_L[kChunk * kQK_K];
  float weights[kChunk * kQK_K];
  float chunk_mins[kChunk * kQK_K / 32];
  float chunk_scales[kChunk * kQK_K / 32];

  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    const int c = static_cast<int>(i % kChunk);
    if (c == 0) {
      search_qk45_chunk(x, chunk_at(nb, i), 15, -1.f, 20, weights, chunk_L, chunk_scales,
                        chunk_mins);
    }
    uint8_t* L = chunk_L + kQK_K * c;
    const float* scales = chunk_scales + kQK_K / 32 * c;
    const float* mins = chunk_mins + kQK_K / 32 * c;
    float max_scale = 0;
    float max_min = 0;
    for (int j = 0; j < kQK_K / 32; ++j) {
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < kQK_K / 32; ++j) {
      // ggml converts to uint8_t first, then clamps to 63.
      ls[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[j])));
      lm[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[j])));
    }
    detail::set_scale_min_k4(ls, lm, y[i].scales);
    y[i].d = float_to_half(max_scale / 63.f);
    y[i].dmin = float_to_half(max_min / 63.f);
    requantize_qk_min(x, y[i].scales, y[i].d, y[i].dmin, 15, L);
    pack_4bit(L, y[i].qs);
  }
}

// The imatrix path shared by Q4_K (nmax 15) and Q5_K (nmax 31). Fills L, d, dmin, scales.
static void quantize_qk_min_impl(const float* x, const float* qw_row, int64_t i, int nmax,
                                 bool clamp_levels, uint8_t* L, uint8_t* scales_out,
                                 uint16_t* d_out, uint16_t* dmin_out) {
  uint8_t Laux[32];
  uint8_t Ls[kQK_K / 32], Lm[kQK_K / 32];
  float weights[32];
  float sw[kQK_K / 32];
  float mins[kQK_K / 32];
  float scales[kQK_K / 32];

  const float sigma2 = superblock_sigma2(x, 2.0f);
  for (int j = 0; j < kQK_K / 32; ++j) {
    const float* qw = qw_row + kQK_K * i + 32 * j;
    for (int l = 0; l < 32; ++l)
      weights[l] = qw[l] * std::sqrt(sigma2 + x[32 * j + l] * x[32 * j + l]);
    float sumw = 0;
    for (int l = 0; l < 32; ++l) sumw += weights[l];
    sw[j] = sumw;
    scales[j] = make_qkx3_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f,
                                 0.05f, 36, false);
  }
  const float d_block = make_qp_quants(kQK_K / 32, 63, scales, Ls, sw);
  const float m_block = make_qp_quants(kQK_K / 32, 63, mins, Lm, sw);
  if (clamp_levels) {  // ggml's Q5_K path clamps to 63, its Q4_K path does not
    for (int j = 0; j < kQK_K / 32; ++j) {
      Ls[j] = std::min<uint8_t>(63, Ls[j]);
      Lm[j] = std::min<uint8_t>(63, Lm[j]);
    }
  }
  detail::set_scale_min_k4(Ls, Lm, scales_out);
  *d_out = float_to_half(d_block);
  *dmin_out = float_to_half(m_block);
  requantize_qk_min(x, scales_out, *d_out, *dmin_out, nmax, L);
}

void quantize_row_q4_K(const float* x, void* blocks, int64_t n, const float* imatrix) {
  if (!imatrix) return quantize_row_q4_K_ref(x, blocks, n);
  const int64_t nb = blocks_in(n, kQK_K, "Q4_K");
  auto* y = static_cast<block_q4_K*>(blocks);
  uint8_t L[kQK_K];
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    quantize_qk_min_impl(x, imatrix, i, 15, false, L, y[i].scales, &y[i].d, &y[i].dmin);
    pack_4bit(L, y[i].qs);
  }
}

// ---- Q5_K ------------------------------------------------------------------------------

void quantize_row_q5_K_ref(const float* x, void* blocks, int64_t n) {
  const int64_t nb = blocks_in(n, kQK_K, "Q5_K");
  auto* y = static_cast<block_q5_K*>(blocks);
  uint8_t chunk_L[kChunk * kQK_K];
  float weights[kChunk * kQK_K];
  float chunk_mins[kChunk * kQK_K / 32];
  float chunk_scales[kChunk * kQK_K / 32];

  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    const int c = static_cast<int>(i % kChunk);
    if (c == 0) {
      search_qk45_chunk(x, chunk_at(nb, i), 31, -0.5f, 15, weights, chunk_L, chunk_scales,
                        chunk_mins);
    }
    uint8_t* L = chunk_L + kQK_K * c;
    const float* scales = chunk_scales + kQK_K / 32 * c;
    const float* mins = chunk_mins + kQK_K / 32 * c;
    float max_scale = 0;
    float max_min = 0;
    for (int j = 0; j < kQK_K / 32; ++j) {
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < kQK_K / 32; ++j) {
      ls[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[j])));
      lm[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[j])));
    }
    detail::set_scale_min_k4(ls, lm, y[i].scales);
    y[i].d = float_to_half(max_scale / 63.f);
    y[i].dmin = float_to_half(max_min / 63.f);
    requantize_qk_min(x, y[i].scales, y[i].d, y[i].dmin, 31, L);
    pack_q5k_high(L, y[i].qh);
    pack_4bit(L, y[i].qs);
  }
}

void quantize_row_q5_K(const float* x, void* blocks, int64_t n, const float* imatrix) {
  if (!imatrix) return quantize_row_q5_K_ref(x, blocks, n);
  const int64_t nb = blocks_in(n, kQK_K, "Q5_K");
  auto* y = static_cast<block_q5_K*>(blocks);
  uint8_t L[kQK_K];
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    quantize_qk_min_impl(x, imatrix, i, 31, true, L, y[i].scales, &y[i].d, &y[i].dmin);
    pack_q5k_high(L, y[i].qh);
    pack_4bit(L, y[i].qs);
  }
}

// ---- Q6_K ------------------------------------------------------------------------------

void quantize_row_q6_K_ref(const float* x, void* blocks, int64_t n) {
  quantize_row_q6_K(x, blocks, n, nullptr);
}

// ggml's quantize_row_q6_K_impl with quant_weights == nullptr is identical to the _ref
// function, so one body serves both.
void quantize_row_q6_K(const float* x, void* blocks, int64_t n, const float* imatrix) {
  const int64_t nb = blocks_in(n, kQK_K, "Q6_K");
  auto* y = static_cast<block_q6_K*>(blocks);
  int8_t L[kQK_K];
  float scales[kQK_K / 16];
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    for (int ib = 0; ib < kQK_K / 16; ++ib) {
      // Note: ggml feeds the raw imatrix here (no sigma^2 term).
      const float* qw = imatrix ? imatrix + kQK_K * i + 16 * ib : nullptr;
      scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1, qw);
    }
    finish_q6k(x, scales, L, y[i]);
  }
}

// ---- Q8_K ------------------------------------------------------------------------------

void quantize_row_q8_K_ref(const float* x, void* blocks, int64_t n) {
  const int64_t nb = blocks_in(n, kQK_K, "Q8_K");
  auto* y = static_cast<block_q8_K*>(blocks);
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    float max = 0;
    float amax = 0;
    for (int j = 0; j < kQK_K; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (amax == 0) {
      y[i].d = 0;
      std::memset(y[i].qs, 0, sizeof(y[i].qs));
      std::memset(y[i].bsums, 0, sizeof(y[i].bsums));
      continue;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < kQK_K; ++j) {
      y[i].qs[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * x[j])));
    }
    for (int j = 0; j < kQK_K / 16; ++j) {
      int sum = 0;
      for (int ii = 0; ii < 16; ++ii) sum += y[i].qs[16 * j + ii];
      y[i].bsums[j] = static_cast<int16_t>(sum);
    }
    y[i].d = 1 / iscale;
  }
}

// Q8_K is an activation format; ggml has no importance-weighted variant.
void quantize_row_q8_K(const float* x, void* blocks, int64_t n, const float* /*imatrix*/) {
  quantize_row_q8_K_ref(x, blocks, n);
}

void dequantize_row_q8_K(const void* blocks, float* y, int64_t n) {
  const int64_t nb = blocks_in(n, kQK_K, "Q8_K");
  const auto* x = static_cast<const block_q8_K*>(blocks);
  for (int64_t i = 0; i < nb; ++i) {
    for (int j = 0; j < kQK_K; ++j) y[i * kQK_K + j] = x[i].d * static_cast<float>(x[i].qs[j]);
  }
}

}  // namespace qsweep::kquants
