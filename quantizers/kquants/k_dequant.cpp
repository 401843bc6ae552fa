// Row decoders of the 256-weight super-block formats Q2_K ... Q6_K (ggml-quants.c's
// dequantize_row_*). Each super-block is decoded in tight loops over 16 or 32 weights that share
// one scale, which the compiler vectorises: the per-sub-block scale products are computed once
// instead of once per weight. The arithmetic per weight is exactly ggml_decode.h's
// decode_<type>(b, e) (same operands, same order, no contraction: -ffp-contract=off), so the
// values are bit-identical to the per-weight decoders the CUDA kernel uses.
#include <cstdint>

#include "backends/kernels/ggml_decode.h"
#include "quantizers/kquants/detail/quant_helpers.h"
#include "quantizers/kquants/kquants.h"

namespace qsweep::kquants {

using detail::blocks_in;

// Q2_K {scales@0[16], qs@16[64], d@80, dmin@82}: x = d*(sc & 15)*q - dmin*(sc >> 4).
void dequantize_row_q2_K(const void* blocks, float* y, int64_t n) {
  const int64_t nb = blocks_in(n, kQK_K, "Q2_K");
  static_assert(sizeof(block_q2_K) == size_t(ggml::block_bytes(ggml::kQ2_K)));
  const auto* x = static_cast<const uint8_t*>(blocks);
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    const uint8_t* b = x + i * sizeof(block_q2_K);
    const float d = ggml::f16_at(b, 80), dmin = ggml::f16_at(b, 82);
    for (int j = 0; j < 16; ++j) {  // weights 16j .. 16j + 15 share scales[j]
      const uint8_t sc = b[j];
      const float dl = d * float(sc & 0xF), ml = dmin * float(sc >> 4);
      const int e0 = 16 * j;
      const uint8_t* q = b + 16 + 32 * (e0 / 128) + e0 % 32;
      const int shift = 2 * ((e0 % 128) / 32);
      float* out = y + e0;
      for (int l = 0; l < 16; ++l) out[l] = dl * float((q[l] >> shift) & 3) - ml;
    }
  }
}

// Q3_K {hmask@0[32], qs@32[64], scales@96[12], d@108}: x = d*(sc - 32)*(q - 4 * !high).
void dequantize_row_q3_K(const void* blocks, float* y, int64_t n) {
  const int64_t nb = blocks_in(n, kQK_K, "Q3_K");
  static_assert(sizeof(block_q3_K) == size_t(ggml::block_bytes(ggml::kQ3_K)));
  const auto* x = static_cast<const uint8_t*>(blocks);
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    const uint8_t* b = x + i * sizeof(block_q3_K);
    const float d = ggml::f16_at(b, 108);
    for (int j = 0; j < 16; ++j) {
      const float dl = d * float(ggml::q3k_scale(b + 96, j));
      const int e0 = 16 * j;
      const uint8_t* q = b + 32 + 32 * (e0 / 128) + e0 % 32;
      const uint8_t* hm = b + e0 % 32;
      const int shift = 2 * ((e0 % 128) / 32), hbit = e0 / 32;
      float* out = y + e0;
      for (int l = 0; l < 16; ++l) {
        const int high = (hm[l] >> hbit) & 1;
        out[l] = dl * float(((q[l] >> shift) & 3) - (high ? 0 : 4));
      }
    }
  }
}

// Q4_K {d@0, dmin@2, scales@4[12], qs@16[128]}: x = d*sc*q - dmin*m, sub-block s = e/32.
void dequantize_row_q4_K(const void* blocks, float* y, int64_t n) {
  const int64_t nb = blocks_in(n, kQK_K, "Q4_K");
  static_assert(sizeof(block_q4_K) == size_t(ggml::block_bytes(ggml::kQ4_K)));
  const auto* x = static_cast<const uint8_t*>(blocks);
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    const uint8_t* b = x + i * sizeof(block_q4_K);
    const float d = ggml::f16_at(b, 0), dmin = ggml::f16_at(b, 2);
    for (int s = 0; s < 8; ++s) {
      uint8_t sc, m;
      ggml::scale_min_k4(s, b + 4, &sc, &m);
      const float d1 = d * float(sc), m1 = dmin * float(m);
      const uint8_t* q = b + 16 + 32 * (s / 2);
      const int shift = 4 * (s % 2);
      float* out = y + 32 * s;
      for (int l = 0; l < 32; ++l) out[l] = d1 * float((q[l] >> shift) & 0xF) - m1;
    }
  }
}

// Q5_K {d@0, dmin@2, scales@4[12], qh@16[32], qs@48[128]}: as Q4_K, bit 4 of q is bit s of
// qh[e % 32].
void dequantize_row_q5_K(const void* blocks, float* y, int64_t n) {
  const int64_t nb = blocks_in(n, kQK_K, "Q5_K");
  static_assert(sizeof(block_q5_K) == size_t(ggml::block_bytes(ggml::kQ5_K)));
  const auto* x = static_cast<const uint8_t*>(blocks);
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    const uint8_t* b = x + i * sizeof(block_q5_K);
    const float d = ggml::f16_at(b, 0), dmin = ggml::f16_at(b, 2);
    const uint8_t* qh = b + 16;
    for (int s = 0; s < 8; ++s) {
      uint8_t sc, m;
      ggml::scale_min_k4(s, b + 4, &sc, &m);
      const float d1 = d * float(sc), m1 = dmin * float(m);
      const uint8_t* q = b + 48 + 32 * (s / 2);
      const int shift = 4 * (s % 2);
      float* out = y + 32 * s;
      for (int l = 0; l < 32; ++l) {
        const int v = ((q[l] >> shift) & 0xF) + (((qh[l] >> s) & 1) << 4);
        out[l] = d1 * float(v) - m1;
      }
    }
  }
}

// Q6_K {ql@0[128], qh@128[64], scales@192[16] int8, d@208}: x = d*scales[e/16]*(q - 32), with
// e = 128c + 32g + l.
void dequantize_row_q6_K(const void* blocks, float* y, int64_t n) {
  const int64_t nb = blocks_in(n, kQK_K, "Q6_K");
  static_assert(sizeof(block_q6_K) == size_t(ggml::block_bytes(ggml::kQ6_K)));
  const auto* x = static_cast<const uint8_t*>(blocks);
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    const uint8_t* b = x + i * sizeof(block_q6_K);
    const float d = ggml::f16_at(b, 208);
    for (int c = 0; c < 2; ++c)
      for (int g = 0; g < 4; ++g)
        for (int h = 0; h < 2; ++h) {  // weights 16h .. 16h + 15 of the 32-weight group g
          const int e0 = 128 * c + 32 * g + 16 * h;
          const float ds = d * float(int8_t(b[192 + e0 / 16]));
          const uint8_t* ql = b + 64 * c + 32 * (g & 1) + 16 * h;
          const uint8_t* qh = b + 128 + 32 * c + 16 * h;
          const int lshift = g < 2 ? 0 : 4, hshift = 2 * g;
          float* out = y + e0;
          for (int l = 0; l < 16; ++l) {
            const int q = (((ql[l] >> lshift) & 0xF) | (((qh[l] >> hshift) & 3) << 4)) - 32;
            out[l] = ds * float(q);
          }
        }
  }
}

}  // namespace qsweep::kquants
