#if !defined(QSWEEP_IN_KQUANTS)
#error \
    "quantizers/kquants/detail/ is private to qsweep_kquants; include quantizers/kquants/kquants.h"
#endif
// Scale/level search helpers shared by the block quantizers, re-expressed from the static
// helpers in ggml/src/ggml-quants.c. The float operations are written in the same order and
// with the same intermediate types as ggml, because the output bytes must match exactly:
// a product like `w*x*l` with int l is (w*x)*float(l), and int -> uint8/int8 stores wrap the
// same way as the C implicit conversions there.
#pragma once

#include <cstdint>

#include "common/errors.h"
#include "common/half.h"

namespace qsweep::kquants::detail {

/// Below this |max| a group counts as all zero (ggml's GROUP_MAX_EPS).
inline constexpr float kGroupMaxEps = 1e-15f;

/// n / block, throwing Error unless n is a non-negative multiple of block.
inline int64_t blocks_in(int64_t n, int block, const char* type_name) {
  QS_THROW_IF_NOT(n >= 0 && n % block == 0, type_name, ": row length ", n,
                  " is not a multiple of the block size ", block);
  return n / block;
}

/// Round to nearest, ties to even, valid for |v| <= 4194303 (ggml's nearest_int: adding
/// 1.5 * 2^23 puts the integer into the low mantissa bits).
inline int nearest_int(float v) {
  const float shifted = v + 12582912.f;
  const uint32_t bits = float_to_bits(shifted);
  return static_cast<int>(bits & 0x007fffffu) - 0x00400000;
}

/// fp32 -> fp16 bits -> fp32, as GGML_FP16_TO_FP32(GGML_FP32_TO_FP16(v)).
inline float round_to_half(float v) {
  return half_to_float(float_to_half(v));
}

/// Symmetric levels in [-nmax, nmax-1] (stored as L + nmax) with the scale refined by a
/// weighted least-squares fit over 18 trial inverse scales (ggml's make_qx_quants).
/// rmse_type: 0 = plain max scaling, 1 = weights x^2 (or qw), negative = one fit, no search.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* qw);

/// ggml's make_q3_quants(n, nmax, ., ., do_rmse = true) (3-bit levels with x^2 weights and a
/// coordinate-descent refinement) on nsub (a multiple of 8) consecutive sub-blocks of n <= 32
/// values at once: sub-block j is x + n*j, its levels go to L + n*j and its scale to
/// scales[j]. Bit-identical to nsub scalar calls (one vector lane per sub-block, each in
/// ggml's order).
void make_q3_quants_lanes(int nsub, int n, int nmax, const float* x, int8_t* L, float* scales);

/// ggml's make_qkx2_quants (asymmetric levels in [0, nmax], scale and min from a weighted
/// least-squares search over nstep+1 trial scales) on nsub (a multiple of 8) consecutive sub-blocks
/// of n <= 32 values at once: sub-block j is x + n*j with weights + n*j; levels to L + n*j, scale
/// to scales[j], -min (>= 0) to the_mins[j]. Bit-identical to nsub scalar calls (one vector lane
/// per sub-block, each in ggml's order; a trial's min depends on the earlier trials, so the trials
/// of one sub-block cannot go side by side).
void make_qkx2_quants_lanes(int nsub, int n, int nmax, const float* x, const float* weights,
                            uint8_t* L, float* scales, float* the_mins, float rmin, float rdelta,
                            int nstep, bool use_mad);

/// As make_qkx2_quants, with x^2 weights when weights is null and the trial levels clamped
/// before rounding (make_qkx3_quants, used by the imatrix paths).
float make_qkx3_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                       float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                       bool use_mad);

/// Non-negative levels in [0, nmax] for non-negative x (scales or mins of sub-blocks),
/// weighted by quant_weights (make_qp_quants).
float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* quant_weights);

/// The 6-bit (scale, min) pair j in [0, 8) of Q4_K / Q5_K's 12-byte packed scales.
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

/// Inverse of get_scale_min_k4: packs 8 (scale, min) pairs (each < 64) into 12 bytes.
inline void set_scale_min_k4(const uint8_t* ls, const uint8_t* lm, uint8_t* q) {
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      q[j] = ls[j];
      q[j + 4] = lm[j];
    } else {
      q[j + 4] = static_cast<uint8_t>((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
      q[j - 4] |= static_cast<uint8_t>((ls[j] >> 4) << 6);
      q[j] |= static_cast<uint8_t>((lm[j] >> 4) << 6);
    }
  }
}

/// The 6-bit scale s in [0, 16) of Q3_K's 12-byte packed scales, minus 32.
inline int q3k_scale(const uint8_t* scales, int s) {
  const int low = s < 8 ? (scales[s] & 0xF) : (scales[s - 8] >> 4);
  const int high = (scales[8 + s % 4] >> (2 * (s / 4))) & 3;
  return (low | (high << 4)) - 32;
}

}  // namespace qsweep::kquants::detail
