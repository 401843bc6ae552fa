// ggml's quantized block formats, byte for byte (ggml/src/ggml-common.h).
//
// Each struct is the on-disk layout used by GGUF files: little-endian, no padding, the
// fp16 scales stored as raw IEEE binary16 bits (uint16_t). Every struct is followed by a
// size check and a comment with its formula and bits per weight (bpw).
//
// Plain C-compatible structs with no member functions, so this header also compiles
// under nvcc for the CUDA twins.
#pragma once

#include <cstdint>

namespace qsweep::kquants {

/// Weights per "legacy" block (Q4_0 ... Q8_0).
inline constexpr int kQK = 32;
/// Weights per K-quant super-block.
inline constexpr int kQK_K = 256;
/// Bytes of packed 6-bit scales/mins in Q4_K / Q5_K (and 6-bit scales in Q3_K).
inline constexpr int kKScaleSize = 12;

using half_bits = uint16_t;  ///< IEEE binary16 bits, as ggml_half.

// ---- 32-weight blocks ----------------------------------------------------------------

/// Q4_0: x = d * (q - 8), q in [0, 15].
/// qs[j] holds weight j in the low nibble and weight j + 16 in the high nibble.
/// 2 + 16 = 18 bytes per 32 weights: 4.5 bpw.
struct block_q4_0 {
  half_bits d;
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(block_q4_0) == sizeof(half_bits) + kQK / 2, "wrong q4_0 block size");

/// Q4_1: x = d * q + m, q in [0, 15]; nibble order as Q4_0.
/// 2 + 2 + 16 = 20 bytes per 32 weights: 5.0 bpw.
struct block_q4_1 {
  half_bits d;
  half_bits m;
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(block_q4_1) == 2 * sizeof(half_bits) + kQK / 2, "wrong q4_1 block size");

/// Q5_0: x = d * (q - 16), q in [0, 31]. Low 4 bits as Q4_0; bit 4 of weight j is bit j of
/// the little-endian uint32 qh. 2 + 4 + 16 = 22 bytes per 32 weights: 5.5 bpw.
struct block_q5_0 {
  half_bits d;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(block_q5_0) == sizeof(half_bits) + 4 + kQK / 2, "wrong q5_0 block size");

/// Q5_1: x = d * q + m, q in [0, 31]; bits as Q5_0.
/// 2 + 2 + 4 + 16 = 24 bytes per 32 weights: 6.0 bpw.
struct block_q5_1 {
  half_bits d;
  half_bits m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(block_q5_1) == 2 * sizeof(half_bits) + 4 + kQK / 2, "wrong q5_1 block size");

/// Q8_0: x = d * q, q in [-127, 127]. 2 + 32 = 34 bytes per 32 weights: 8.5 bpw.
struct block_q8_0 {
  half_bits d;
  int8_t qs[kQK];
};
static_assert(sizeof(block_q8_0) == sizeof(half_bits) + kQK, "wrong q8_0 block size");

// ---- 256-weight super-blocks (K-quants) ----------------------------------------------
//
// Element e of a super-block, for the 2-bit planes of Q2_K/Q3_K: byte qs[32*(e/128) + e%32],
// bits 2*((e%128)/32) .. +1.

/// Q2_K: 16 sub-blocks of 16. x = d * (scales[s] & 0xF) * q - dmin * (scales[s] >> 4),
/// q in [0, 3], s = e / 16.
/// 16 + 64 + 2 + 2 = 84 bytes per 256 weights: 2.625 bpw.
struct block_q2_K {
  uint8_t scales[kQK_K / 16];  ///< low nibble: scale, high nibble: min
  uint8_t qs[kQK_K / 4];       ///< 2-bit quants
  half_bits d;                 ///< super-block scale for the scales
  half_bits dmin;              ///< super-block scale for the mins
};
static_assert(sizeof(block_q2_K) == 2 * sizeof(half_bits) + kQK_K / 16 + kQK_K / 4,
              "wrong q2_K block size");

/// Q3_K: 16 sub-blocks of 16, x = d * (sc[s] - 32) * (q - 4), q in [0, 7], no min.
/// Low 2 bits of q in qs (layout above); bit 2 of q is bit (e/32) of hmask[e%32].
/// The 6-bit scale sc[s]: low 4 bits = s < 8 ? scales[s] & 0xF : scales[s-8] >> 4,
/// high 2 bits = (scales[8 + s%4] >> 2*(s/4)) & 3.
/// 32 + 64 + 12 + 2 = 110 bytes per 256 weights: 3.4375 bpw.
struct block_q3_K {
  uint8_t hmask[kQK_K / 8];  ///< high bit of the 3-bit quants
  uint8_t qs[kQK_K / 4];     ///< low 2 bits
  uint8_t scales[12];        ///< 16 scales, 6 bits each
  half_bits d;               ///< super-block scale
};
static_assert(sizeof(block_q3_K) == sizeof(half_bits) + kQK_K / 4 + kQK_K / 8 + 12,
              "wrong q3_K block size");

/// Q4_K: 8 sub-blocks of 32, x = d * sc[s] * q - dmin * m[s], q in [0, 15], s = e / 32.
/// q of element e: qs[32*(e/64) + e%32], low nibble if e%64 < 32 else high nibble.
/// (sc, m) 6-bit pairs packed in scales[12] (see get_scale_min_k4 in kquants.cpp):
/// s < 4: sc = scales[s] & 63, m = scales[s+4] & 63; s >= 4: low 4 bits from the nibbles of
/// scales[s+4], high 2 bits from the top bits of scales[s-4] (sc) and scales[s] (m).
/// 2 + 2 + 12 + 128 = 144 bytes per 256 weights: 4.5 bpw.
struct block_q4_K {
  half_bits d;                  ///< super-block scale for the quantized scales
  half_bits dmin;               ///< super-block scale for the quantized mins
  uint8_t scales[kKScaleSize];  ///< scales and mins, 6 bits each
  uint8_t qs[kQK_K / 2];        ///< 4-bit quants
};
static_assert(sizeof(block_q4_K) == 2 * sizeof(half_bits) + kKScaleSize + kQK_K / 2,
              "wrong q4_K block size");

/// Q5_K: as Q4_K with q in [0, 31]; bit 4 of q is bit (e/32) of qh[e%32].
/// 2 + 2 + 12 + 32 + 128 = 176 bytes per 256 weights: 5.5 bpw.
struct block_q5_K {
  half_bits d;
  half_bits dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qh[kQK_K / 8];  ///< high bit of the quants
  uint8_t qs[kQK_K / 2];  ///< low 4 bits
};
static_assert(sizeof(block_q5_K) == 2 * sizeof(half_bits) + kKScaleSize + kQK_K / 2 + kQK_K / 8,
              "wrong q5_K block size");

/// Q6_K: 16 sub-blocks of 16, x = d * scales[e/16] * (q - 32), q in [0, 63].
/// With c = e/128, g = (e%128)/32, l = e%32: low 4 bits in ql[64c + 32*(g&1) + l]
/// (low nibble for g < 2, high nibble for g >= 2), high 2 bits = (qh[32c + l] >> 2g) & 3.
/// 128 + 64 + 16 + 2 = 210 bytes per 256 weights: 6.5625 bpw.
struct block_q6_K {
  uint8_t ql[kQK_K / 2];      ///< low 4 bits
  uint8_t qh[kQK_K / 4];      ///< high 2 bits
  int8_t scales[kQK_K / 16];  ///< 8-bit signed scales
  half_bits d;                ///< super-block scale
};
static_assert(sizeof(block_q6_K) == sizeof(half_bits) + kQK_K / 16 + 3 * kQK_K / 4,
              "wrong q6_K block size");

/// Q8_K: the activation format of ggml's K-quant dot products. x = d * q, float d;
/// bsums[k] = sum of qs[16k .. 16k+15]. 4 + 256 + 32 = 292 bytes per 256 weights: 9.125 bpw.
struct block_q8_K {
  float d;
  int8_t qs[kQK_K];
  int16_t bsums[kQK_K / 16];
};
static_assert(sizeof(block_q8_K) == sizeof(float) + kQK_K + kQK_K / 16 * sizeof(int16_t),
              "wrong q8_K block size");

}  // namespace qsweep::kquants
