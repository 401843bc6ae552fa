// Decoding of one weight of a ggml block, shared by the CPU decoders
// (quantizers/kquants: dequantize_row_<type> call these) and the CUDA dequantization kernel
// (backends/cuda/cuda_quant_ops.cu, one thread per weight), so both run the same arithmetic.
// Blocks are read as raw little-endian bytes at the offsets of ggml-common.h, which
// quantizers/kquants/blocks.h lays out as structs (its static_asserts pin the same offsets,
// see kquants' decoders). Float products are written unfused on purpose: the host build uses
// -ffp-contract=off for these libraries and the .cu files are compiled with --fmad=false.
#pragma once

#include <cstdint>

#include "common/half.h"
#include "common/hd.h"

namespace qsweep::ggml {

/// ggml type ids (ggml.h) of the block types qsweep writes and decodes.
enum GgmlType : int {
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  // 16-bit element types, not blocks: a GGUF q/k tensor's rows offered with a row map
  // (GgmlBlocks::row_of), multiplied by cpu_gemv_w16 at decode; block_weights() is 0 for them.
  kF16 = 1,
  kBF16 = 30,
};

QS_HD inline float f16_at(const uint8_t* b, int off) {
  return half_to_float(uint16_t(b[off] | (uint16_t(b[off + 1]) << 8)));
}
QS_HD inline uint32_t u32_at(const uint8_t* b, int off) {
  return uint32_t(b[off]) | (uint32_t(b[off + 1]) << 8) | (uint32_t(b[off + 2]) << 16) |
         (uint32_t(b[off + 3]) << 24);
}

/// Weights per block and bytes per block of a type; 0 for a type not listed above.
QS_HD constexpr int block_weights(int type) {
  switch (type) {
    case kQ4_0:
    case kQ4_1:
    case kQ5_0:
    case kQ5_1:
    case kQ8_0:
      return 32;
    case kQ2_K:
    case kQ3_K:
    case kQ4_K:
    case kQ5_K:
    case kQ6_K:
      return 256;
    default:
      return 0;
  }
}
QS_HD constexpr int block_bytes(int type) {
  switch (type) {
    case kQ4_0:
      return 18;
    case kQ4_1:
      return 20;
    case kQ5_0:
      return 22;
    case kQ5_1:
      return 24;
    case kQ8_0:
      return 34;
    case kQ2_K:
      return 84;
    case kQ3_K:
      return 110;
    case kQ4_K:
      return 144;
    case kQ5_K:
      return 176;
    case kQ6_K:
      return 210;
    default:
      return 0;
  }
}

// ---- 32-weight blocks: weight e in [0, 32) ------------------------------------------------
// Q4_0 {d@0, qs@2}: x = (q - 8) * d; weight j < 16 in the low nibble of qs[j], j + 16 high.
QS_HD inline float decode_q4_0(const uint8_t* b, int e) {
  const uint8_t q = b[2 + e % 16];
  return float((e < 16 ? (q & 0x0F) : (q >> 4)) - 8) * f16_at(b, 0);
}
// Q4_1 {d@0, m@2, qs@4}: x = q * d + m.
QS_HD inline float decode_q4_1(const uint8_t* b, int e) {
  const uint8_t q = b[4 + e % 16];
  return float(e < 16 ? (q & 0x0F) : (q >> 4)) * f16_at(b, 0) + f16_at(b, 2);
}
// Q5_0 {d@0, qh@2, qs@6}: x = (q - 16) * d; bit 4 of weight e is bit e of qh.
QS_HD inline float decode_q5_0(const uint8_t* b, int e) {
  const uint8_t q = b[6 + e % 16];
  const int h = int((u32_at(b, 2) >> e) & 1u) << 4;
  return float(((e < 16 ? (q & 0x0F) : (q >> 4)) | h) - 16) * f16_at(b, 0);
}
// Q5_1 {d@0, m@2, qh@4, qs@8}: x = q * d + m.
QS_HD inline float decode_q5_1(const uint8_t* b, int e) {
  const uint8_t q = b[8 + e % 16];
  const int h = int((u32_at(b, 4) >> e) & 1u) << 4;
  return float((e < 16 ? (q & 0x0F) : (q >> 4)) | h) * f16_at(b, 0) + f16_at(b, 2);
}
// Q8_0 {d@0, qs@2 int8}: x = q * d.
QS_HD inline float decode_q8_0(const uint8_t* b, int e) {
  return float(int8_t(b[2 + e])) * f16_at(b, 0);
}

// ---- 256-weight super-blocks: weight e in [0, 256) ----------------------------------------
// 2-bit planes (Q2_K, Q3_K): byte qs[32*(e/128) + e%32], bits 2*((e%128)/32).
QS_HD inline int plane2(const uint8_t* qs, int e) {
  return (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
}
// Q2_K {scales@0[16], qs@16[64], d@80, dmin@82}: x = d*(sc & 15)*q - dmin*(sc >> 4).
QS_HD inline float decode_q2_K(const uint8_t* b, int e) {
  const uint8_t sc = b[e / 16];
  const float dl = f16_at(b, 80) * float(sc & 0xF);
  const float ml = f16_at(b, 82) * float(sc >> 4);
  return dl * float(plane2(b + 16, e)) - ml;
}
// Q3_K {hmask@0[32], qs@32[64], scales@96[12], d@108}: x = d*(sc - 32)*(q - 4), the 6-bit sc
// as blocks.h describes.
QS_HD inline int q3k_scale(const uint8_t* scales, int s) {
  const int low = s < 8 ? (scales[s] & 0xF) : (scales[s - 8] >> 4);
  const int high = (scales[8 + s % 4] >> (2 * (s / 4))) & 3;
  return (low | (high << 4)) - 32;
}
QS_HD inline float decode_q3_K(const uint8_t* b, int e) {
  const float dl = f16_at(b, 108) * float(q3k_scale(b + 96, e / 16));
  const bool high = (b[e % 32] >> (e / 32)) & 1;
  return dl * float(plane2(b + 32, e) - (high ? 0 : 4));
}
// The 6-bit (scale, min) pair s of Q4_K/Q5_K's 12 packed bytes (ggml's get_scale_min_k4).
QS_HD inline void scale_min_k4(int s, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (s < 4) {
    *d = q[s] & 63;
    *m = q[s + 4] & 63;
  } else {
    *d = uint8_t((q[s + 4] & 0xF) | ((q[s - 4] >> 6) << 4));
    *m = uint8_t((q[s + 4] >> 4) | ((q[s] >> 6) << 4));
  }
}
// All eight pairs at once, as scale_min_k4 gives them one by one: out[0..7] the scales,
// out[8..15] the mins. Unpacked four at a time in 32-bit words (bytes 0–3 hold sc 0–3 and the top
// bits of sc 4–7, bytes 4–7 m 0–3 and the top bits of m 4–7, bytes 8–11 the low nibbles of
// sc 4–7 and m 4–7): no branches, for the CPU's block GEMV.
QS_HD inline void scale_min_k4_all(const uint8_t* q, uint8_t out[16]) {
  uint32_t u[3];
  for (int w = 0; w < 3; ++w)
    u[w] = uint32_t(q[4 * w]) | uint32_t(q[4 * w + 1]) << 8 | uint32_t(q[4 * w + 2]) << 16 |
           uint32_t(q[4 * w + 3]) << 24;
  const uint32_t six = 0x3f3f3f3f, nib = 0x0f0f0f0f, two = 0x03030303;
  const uint32_t words[4] = {u[0] & six, (u[2] & nib) | (((u[0] >> 6) & two) << 4), u[1] & six,
                             ((u[2] >> 4) & nib) | (((u[1] >> 6) & two) << 4)};
  for (int w = 0; w < 4; ++w)
    for (int i = 0; i < 4; ++i) out[4 * w + i] = uint8_t(words[w] >> (8 * i));
}
// Q4_K {d@0, dmin@2, scales@4[12], qs@16[128]}: x = d*sc*q - dmin*m, s = e/32.
QS_HD inline float decode_q4_K(const uint8_t* b, int e) {
  const int s = e / 32;
  uint8_t sc, m;
  scale_min_k4(s, b + 4, &sc, &m);
  const float d1 = f16_at(b, 0) * float(sc), m1 = f16_at(b, 2) * float(m);
  const int q = (b[16 + 32 * (s / 2) + e % 32] >> (4 * (s % 2))) & 0xF;
  return d1 * float(q) - m1;
}
// Q5_K {d@0, dmin@2, scales@4[12], qh@16[32], qs@48[128]}: as Q4_K, bit 4 of q is bit s of
// qh[e%32].
QS_HD inline float decode_q5_K(const uint8_t* b, int e) {
  const int s = e / 32, l = e % 32;
  uint8_t sc, m;
  scale_min_k4(s, b + 4, &sc, &m);
  const float d1 = f16_at(b, 0) * float(sc), m1 = f16_at(b, 2) * float(m);
  const int high = ((b[16 + l] >> s) & 1) << 4;
  const int q = ((b[48 + 32 * (s / 2) + l] >> (4 * (s % 2))) & 0xF) + high;
  return d1 * float(q) - m1;
}
// Q6_K {ql@0[128], qh@128[64], scales@192[16] int8, d@208}: x = d*scales[e/16]*(q - 32).
QS_HD inline float decode_q6_K(const uint8_t* b, int e) {
  const int c = e / 128, g = (e % 128) / 32, l = e % 32;
  const uint8_t ql = b[64 * c + 32 * (g & 1) + l];
  const int low = g < 2 ? (ql & 0xF) : (ql >> 4);
  const int high = (b[128 + 32 * c + l] >> (2 * g)) & 3;
  const int q = (low | (high << 4)) - 32;
  return f16_at(b, 208) * float(int8_t(b[192 + e / 16])) * float(q);
}

/// Weight e of the block at b of `type` (one of GgmlType; 0 for any other type).
QS_HD inline float decode(int type, const uint8_t* b, int e) {
  switch (type) {
    case kQ4_0:
      return decode_q4_0(b, e);
    case kQ4_1:
      return decode_q4_1(b, e);
    case kQ5_0:
      return decode_q5_0(b, e);
    case kQ5_1:
      return decode_q5_1(b, e);
    case kQ8_0:
      return decode_q8_0(b, e);
    case kQ2_K:
      return decode_q2_K(b, e);
    case kQ3_K:
      return decode_q3_K(b, e);
    case kQ4_K:
      return decode_q4_K(b, e);
    case kQ5_K:
      return decode_q5_K(b, e);
    case kQ6_K:
      return decode_q6_K(b, e);
    default:
      return 0.0f;
  }
}

}  // namespace qsweep::ggml
