// The per-element math of the min/max quantization grid and of GPTQ's column loop, shared by
// the CPU code (quantizers/rtn.cpp's QuantGrid, backends/cpu/cpu_quant_ops.cpp's GPTQ loop,
// which quantizers/gptq.cpp runs) and the CUDA twin (backends/cuda/cuda_quant_ops.cu, one
// thread per weight row). The grid is documented in quantizers/quantizers.h; these functions
// are its arithmetic, written once. No FMA contraction on either side (-ffp-contract=off on
// the host libraries, --fmad=false for the .cu files), so both round alike.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/half.h"
#include "common/hd.h"

namespace qsweep::kernels {

/// min(min(x), 0) and max(max(x), 0) of x[0..n), as std::min / std::max compare.
QS_HD inline void grid_range(const float* x, int64_t n, float* xmin, float* xmax) {
  float lo = 0.0f, hi = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    lo = x[i] < lo ? x[i] : lo;
    hi = hi < x[i] ? x[i] : hi;
  }
  *xmin = lo;
  *xmax = hi;
}

/// (scale, zero) of the grid over [xmin, xmax] (quantizers.h). With fp16_scale, a scale that
/// overflows fp16 comes back infinite: the host caller reports it.
QS_HD inline void grid_params(float xmin, float xmax, int maxq, bool sym, bool fp16_scale,
                              float* scale, float* zero) {
  const float maxq_f = float(maxq);
  if (sym) {
    const float a = fabsf(xmin);
    xmax = a < xmax ? xmax : a;  // std::max(|xmin|, xmax)
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin == 0.0f && xmax == 0.0f) {
    xmin = -1.0f;
    xmax = +1.0f;
  }
  float s = (xmax - xmin) / maxq_f;
  if (fp16_scale) {
    s = half_to_float(float_to_half(s));
    if (s == 0.0f) s = half_to_float(1);  // smallest fp16 subnormal, 2^-24
  }
  *scale = s;
  if (sym) {
    *zero = (maxq_f + 1.0f) / 2.0f;
  } else {
    const float z = nearbyintf(-xmin / s);
    *zero = z < 0.0f ? 0.0f : (maxq_f < z ? maxq_f : z);  // std::clamp(z, 0, maxq)
  }
}

/// clamp(round_half_even(x / scale) + zero, 0, maxq); NaN (an overflowed scale, which the
/// host then reports) gives 0 rather than an undefined conversion.
QS_HD inline uint8_t grid_quantize(float x, float scale, float zero, int maxq) {
  const float q = nearbyintf(x / scale) + zero;
  const float maxq_f = float(maxq);
  return uint8_t(!(q > 0.0f) ? 0.0f : (q < maxq_f ? q : maxq_f));
}

/// What GPTQ's column loop needs to know about the grid and the groups.
struct GptqColumnsConfig {
  int bits = 4;
  bool sym = false;
  bool fp16_scale = true;
  /// Columns per group (cols for one group per row).
  int64_t group_size = 0;
  /// Groups found when their first processing-order column is reached (GPTQ's default with
  /// group_size != -1); else scales/zeros are given.
  bool dynamic_groups = false;
  /// Group of processing column j is perm[j] / group_size (else j / group_size).
  bool static_groups = false;
  int block_size = 128;
};

/// One weight row through the columns [i1, i1 + count) of a GPTQ block: quantizes each column
/// with its group's grid, propagates the scaled error to the later columns of the block and
/// records it for the trailing update. w1: the row's block columns (updated in place);
/// err1: the row's errors (count entries); w_row: the row of W as lazily updated before this
/// block (dynamic groups are found on it, as the reference does); hinv: Hinv[cols, cols]
/// row-major upper; perm: processing column → original column; scales/zeros: [groups, rows];
/// codes_row: the row's codes, original column order. Returns the row's loss over the block
/// (Σ diff² / Hinv_jj² / 2, the reference's Losses). w1 and err1 step by `stride` (1 on the
/// CPU; the number of rows on CUDA, whose scratch is column-major for coalesced access).
QS_HD inline double gptq_row_block(float* w1, float* err1, int64_t stride, const float* w_row,
                                   const float* hinv, const int64_t* perm, float* scales,
                                   float* zeros, uint8_t* codes_row, int64_t r, int64_t rows,
                                   int64_t cols, int64_t i1, int64_t count,
                                   const GptqColumnsConfig& cfg) {
  const int maxq = (1 << cfg.bits) - 1;
  const int64_t gs = cfg.group_size;
  double loss = 0.0;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t col = i1 + i;
    int64_t g = 0;
    if (cfg.static_groups) {
      g = perm[col] / gs;
    } else if (cfg.dynamic_groups) {
      g = col / gs;
      if (col % gs == 0) {
        float xmin, xmax;
        grid_range(w_row + col, gs < cols - col ? gs : cols - col, &xmin, &xmax);
        grid_params(xmin, xmax, maxq, cfg.sym, cfg.fp16_scale, &scales[g * rows + r],
                    &zeros[g * rows + r]);
      }
    }
    const float scale = scales[g * rows + r], zero = zeros[g * rows + r];
    const float w = w1[i * stride], d = hinv[col * cols + col];
    const uint8_t code = grid_quantize(w, scale, zero, maxq);
    codes_row[perm[col]] = code;
    const float diff = w - scale * (float(code) - zero);
    loss += double(diff * diff / (d * d) / 2.0f);
    const float err = diff / d;
    const float* h = hinv + col * cols + i1;
    for (int64_t j = i + 1; j < count; ++j) w1[j * stride] -= err * h[j];
    err1[i * stride] = err;
  }
  return loss;
}

}  // namespace qsweep::kernels
